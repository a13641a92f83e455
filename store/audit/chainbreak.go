package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"zhianhub/store"
)

// ActionChainBreak is the audit action of the security event recorded when
// Verify finds the chain broken (forwarded to the security-protection
// platform by adapters/secplatform).
const ActionChainBreak = "security.chain_break"

// ResultBroken is the result of an ActionChainBreak entry.
const ResultBroken = "broken"

// Summary describes a report in one line (English, for logs and the
// command line).
func (r Report) Summary() string {
	if r.OK {
		return fmt.Sprintf("audit chain OK: %d entries, %d checkpoints, last seq %d", r.Entries, r.Checkpoints, r.LastSeq)
	}
	return fmt.Sprintf("audit chain BROKEN at seq %d (%s): %s; %d entries and %d checkpoints checked out before it",
		r.FirstBad.Seq, r.FirstBad.Kind, r.FirstBad.Detail, r.Entries, r.Checkpoints)
}

// ChainBreakEntry returns the security event of a broken chain: by (who
// verified: Actor, Unit, Role, CorrelationID are kept) with Action
// ActionChainBreak, Object the first bad seq, Result ResultBroken, Reason
// the report's Summary and Detail the problem. by.Actor defaults to
// "system".
func ChainBreakEntry(rep Report, by Entry) (Entry, error) {
	if rep.OK || rep.FirstBad == nil {
		return Entry{}, errors.New("audit: chain break: the report finds the chain intact")
	}
	if by.Actor == "" {
		by.Actor = "system"
	}
	by.Action, by.Object, by.Result, by.Reason = ActionChainBreak, strconv.FormatInt(rep.FirstBad.Seq, 10), ResultBroken, rep.Summary()
	if len(by.Reason) > MaxFieldSize {
		by.Reason = strings.ToValidUTF8(by.Reason[:MaxFieldSize], "")
	}
	by.Detail = map[string]any{"seq": rep.FirstBad.Seq, "kind": rep.FirstBad.Kind, "entries": rep.Entries, "checkpoints": rep.Checkpoints}
	return by, nil
}

// StageChainBreak stages the security event of a broken chain
// (ChainBreakEntry) through q: the running hub's Writer chains it after
// the head, where a broken part cannot hide it.
func StageChainBreak(ctx context.Context, q store.Querier, rep Report, by Entry) error {
	e, err := ChainBreakEntry(rep, by)
	if err != nil {
		return err
	}
	return Stage(ctx, q, e)
}
