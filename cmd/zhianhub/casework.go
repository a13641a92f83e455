package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/adapters/citybus"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/lead"
	"zhianhub/store/warning"
)

// warningSweepInterval is how often the overdue sweep (督办) runs.
const warningSweepInterval = time.Minute

// casework is the hub's warnings and leads: their services (whose API is
// mounted with the others), the route that takes warning.issued and
// lead.registered from zhian.events, and the overdue sweep.
type casework struct {
	logger   *slog.Logger
	warnings *warning.Service
	leads    *lead.Service
	route    *routes.Portal
}

// newCasework builds warnings and leads on the bus routes' relay and the
// unit tree. With the city bus enabled, a warning's disposition is
// reported to the city bureau (feedback.warning) in the transaction that
// records it; without it, not (the warning service logs that at start).
func newCasework(cfg config.Config, logger *slog.Logger, b *busRoutes, units *auth.UnitTree) (*casework, error) {
	p := &casework{logger: logger}
	var feedback warning.FeedbackFiler
	if b.city != nil {
		feedback = warningFeedback{f: b.city.feedbacks}
	}
	var err error
	if p.warnings, err = warning.New(warning.Config{Pool: b.pool, Units: units, EventsExchange: EventsExchange,
		Notify: b.relay.Notify, AuditNotify: b.audit.Notify, Logger: logger, Feedback: feedback}); err != nil {
		return nil, err
	}
	if p.leads, err = lead.New(lead.Config{Pool: b.pool, Keyring: b.keyring, AuditNotify: b.audit.Notify, Logger: logger}); err != nil {
		return nil, err
	}
	dl, err := deadletter.New(b.pool, deadletter.Config{Cipher: b.keyring, Auditor: b.audit, Actor: b.keys.Node()})
	if err != nil {
		return nil, err
	}
	p.route, err = routes.NewPortal(routes.PortalConfig{AMQPURL: cfg.AMQP.URL, Pool: b.pool, Contracts: b.events, DeadLetters: dl,
		Warnings: p.warnings, Leads: p.leads, AuditNotify: b.audit.Notify, Logger: logger, Exchange: EventsExchange})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// warningFeedback files a warning's disposition as feedback.warning on the
// city bus, in the warning's transaction, with its audit entry staged
// there too (the warning service notifies the relay after the commit).
type warningFeedback struct{ f *citybus.Feedbacks }

func (w warningFeedback) FileFeedback(ctx context.Context, tx pgx.Tx, fb warning.Feedback) error {
	_, entry, err := w.f.FileFeedbackTx(ctx, tx, citybus.FeedbackRequest{RefType: fb.RefType, RefNo: fb.RefNo, Unit: fb.Unit,
		Officer: fb.Officer, Result: fb.Result, Detail: fb.Detail, At: fb.At, Actor: fb.Actor, CorrelationID: fb.CorrelationID})
	if err != nil {
		return err
	}
	return audit.Stage(ctx, tx, entry)
}

// apiConfig adds the warning and lead services to the API configuration.
func (p *casework) apiConfig(c *api.Config) {
	if p != nil {
		c.Warnings, c.Leads = p.warnings, p.leads
	}
}

// start runs the route and the sweep until ctx ends.
func (p *casework) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { _ = p.route.Run(ctx) })
	wg.Go(func() { p.sweep(ctx) })
}

// sweep escalates overdue warnings every warningSweepInterval; each is
// logged. Deadlines are never extended.
func (p *casework) sweep(ctx context.Context) {
	t := time.NewTicker(warningSweepInterval)
	defer t.Stop()
	for {
		for {
			esc, err := p.warnings.Sweep(ctx, warning.DefaultSweepBatch)
			if err != nil && ctx.Err() == nil {
				p.logger.Error("warning sweep failed", "err", err)
			}
			for _, e := range esc {
				p.logger.Warn("warning overdue: escalated to the unit and its parent", "warningId", e.WarningID, "unit", e.Unit,
					"parent", e.Parent, "deadline", e.Deadline)
			}
			if err != nil || len(esc) < warning.DefaultSweepBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
