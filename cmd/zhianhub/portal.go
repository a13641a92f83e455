package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/inbox"
)

// portal is what the portal features run besides the API: the one
// listening connection that wakes the inbox streams (SSE), and the
// smart-push route (its own durable queue zhian.events.push on the events
// exchange).
type portal struct {
	live     *inbox.Listener
	push     *routes.Push
	stopLive context.CancelFunc
}

func newPortal(cfg config.Config, pool *pgxpool.Pool, bus *busRoutes, a *apiAuth, aw *audit.Writer, node string, logger *slog.Logger) (*portal, error) {
	live, err := inbox.NewListener(inbox.ListenerConfig{Pool: pool, Logger: logger})
	if err != nil {
		return nil, err
	}
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: bus.keyring, Auditor: aw, Actor: node})
	if err != nil {
		return nil, err
	}
	p, err := routes.NewPush(routes.PushConfig{AMQPURL: cfg.AMQP.URL, Pool: pool, Contracts: bus.events, DeadLetters: dl,
		Units: a.units, Logger: logger, Exchange: EventsExchange})
	if err != nil {
		return nil, err
	}
	return &portal{live: live, push: p}, nil
}

// start runs the listener (until ctx ends or stopStreams) and the push
// route (until ctx ends).
func (p *portal) start(ctx context.Context, wg *sync.WaitGroup) {
	lctx, cancel := context.WithCancel(ctx)
	p.stopLive = cancel
	wg.Go(func() { _ = p.live.Run(lctx) })
	wg.Go(func() { _ = p.push.Run(ctx) })
}

// stopStreams ends the inbox streams (each gets "bye"): first thing at
// shutdown, since the HTTP server's graceful shutdown waits for them.
func (p *portal) stopStreams() {
	if p.stopLive != nil {
		p.stopLive()
	}
}
