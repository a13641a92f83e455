package routes

import (
	"context"
	"fmt"
	"time"

	"zhianhub/envelope"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
)

// sweepGaps rejects, with E140, the held messages of every key whose gap has
// not filled within the gap timeout, until ctx ends. The sender resends from
// the gap: E140 is not a final outcome, so the resends are processed afresh.
func (in *Inbound) sweepGaps(ctx context.Context) {
	t := time.NewTicker(in.cfg.GapSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := in.SweepGapsOnce(context.WithoutCancel(ctx))
			if err != nil {
				in.cfg.Logger.Error("gap sweep failed", "err", err)
			}
			if n == 0 || err != nil || ctx.Err() != nil {
				break
			}
		}
	}
}

// SweepGapsOnce handles up to 100 keys with stale held messages and returns
// how many messages it rejected.
func (in *Inbound) SweepGapsOnce(ctx context.Context) (int, error) {
	cutoff := in.cfg.Now().Add(-in.cfg.GapTimeout)
	keys, err := exchange.StaleKeys(ctx, in.cfg.Pool, cutoff, 100)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, k := range keys {
		err := in.inTx(ctx, func(tx *work) error {
			var entries []audit.Entry
			next, _, err := exchange.NextSeq(ctx, tx, k.Sender, k.PersonNo) // locks the key
			if err != nil {
				return err
			}
			var oldest *time.Time
			if err := tx.QueryRow(ctx, `SELECT min(held_since) FROM reseq_held WHERE sender = $1 AND person_no = $2`, k.Sender, k.PersonNo).Scan(&oldest); err != nil {
				return err
			}
			if oldest == nil || oldest.After(cutoff) {
				return nil // the gap filled meanwhile
			}
			held, err := exchange.TakeAllHeld(ctx, tx, k)
			if err != nil {
				return err
			}
			for _, h := range held {
				m := &envelope.Message{Header: envelope.Header{ID: h.ID, Kind: h.Kind, From: h.Sender, To: in.cfg.Node, TS: h.TS, Corr: h.Corr}}
				reason := fmt.Sprintf("seq：序号 %d 之前缺少序号 %d 的消息，超过 %s 未补齐，请从缺口处重发", h.Seq, next, in.cfg.GapTimeout)
				e, err := in.reject(ctx, tx, "", m, h.Raw, string(envelope.CodeSequenceGap), reason)
				if err != nil {
					return err
				}
				entries = append(entries, e...)
			}
			total += len(held)
			return audit.StageBatch(ctx, tx, entries)
		})
		if err != nil {
			return total, err
		}
		in.cfg.Notify()
		in.cfg.Audit.Notify()
	}
	return total, nil
}
