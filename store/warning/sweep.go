package warning

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store/audit"
	"zhianhub/store/inbox"
)

// DefaultSweepBatch is how many overdue warnings one Sweep transaction
// escalates at most.
const DefaultSweepBatch = 200

// Escalation is one warning Sweep escalated.
type Escalation struct {
	WarningID string
	Unit      string
	Parent    string // "" when the unit has none
	Deadline  time.Time
}

// Sweep escalates (督办) the open warnings whose deadline passed at the
// service's clock and which were not escalated yet, up to batch of them
// (DefaultSweepBatch when batch <= 0), in one transaction: each is marked
// escalated_at, its responsible unit and that unit's parent get an inbox
// item, and the step is recorded and audited. The deadline is left as it
// is. Rows are claimed FOR UPDATE SKIP LOCKED, so concurrent sweeps (in
// several processes) share the work and escalate each warning once; a
// second sweep finds nothing more to do. Call it until it returns fewer
// than batch.
func (s *Service) Sweep(ctx context.Context, batch int) ([]Escalation, error) {
	if batch <= 0 {
		batch = DefaultSweepBatch
	}
	now := s.cfg.Now()
	var out []Escalation
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM warning
			WHERE escalated_at IS NULL AND state IN ('issued', 'signed', 'in_progress', 'transferred') AND deadline < $1
			ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED`, now, batch)
		if err != nil {
			return fmt.Errorf("warning: sweep: %w", err)
		}
		ws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Warning, error) { return scan(r) })
		if err != nil {
			return fmt.Errorf("warning: sweep: %w", err)
		}
		var entries []audit.Entry
		for _, w := range ws {
			e := Escalation{WarningID: w.WarningID, Unit: w.Unit, Parent: s.cfg.Units.Parent(w.Unit), Deadline: w.Deadline}
			if _, err := tx.Exec(ctx, `UPDATE warning SET escalated_at = $2, updated_at = $2 WHERE warning_id = $1`, w.WarningID, now); err != nil {
				return fmt.Errorf("warning: escalate %s: %w", w.WarningID, err)
			}
			if err := addStep(ctx, tx, w.WarningID, Step{Action: "escalate", FromState: w.State, ToState: w.State, Unit: w.Unit,
				Actor: "system", Note: "超过时限 " + w.Deadline.In(shanghai).Format("2006-01-02 15:04") + " 未办结", At: now}); err != nil {
				return err
			}
			body := fmt.Sprintf("预警 %s 已超过时限 %s（当前状态：%s），请督促办理", w.WarningID,
				w.Deadline.In(shanghai).Format("2006-01-02 15:04"), StateNames[w.State])
			items := []inbox.Item{{RecipientKind: inbox.ToUnit, Recipient: w.Unit, Kind: "warning", Ref: w.WarningID,
				DedupKey: "warning-overdue:" + w.WarningID, Title: clipTitle("预警督办：" + w.Title), Body: body, Level: w.Level}}
			if e.Parent != "" {
				items = append(items, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: e.Parent, Kind: "warning", Ref: w.WarningID,
					DedupKey: "warning-overdue:" + w.WarningID, Title: clipTitle("下级单位预警督办：" + w.Title),
					Body: body + "（责任单位：" + unitLabel(s.cfg.Units, w.Unit) + "）", Level: w.Level})
			}
			if _, err := inbox.Deliver(ctx, tx, items...); err != nil {
				return err
			}
			entries = append(entries, audit.Entry{At: now, Actor: "system", Action: "warning.escalate", Object: w.WarningID,
				Result: "ok", Reason: "超过时限未办结，已督办（时限不自动延长）",
				Detail: map[string]any{"unit": w.Unit, "parent": e.Parent, "state": w.State, "deadline": w.Deadline.UTC().Format(time.RFC3339)}})
			out = append(out, e)
		}
		return audit.StageBatch(ctx, tx, entries)
	})
	if err != nil {
		return nil, err
	}
	if len(out) > 0 {
		s.cfg.AuditNotify()
	}
	return out, nil
}
