package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/store/inbox"
)

// portal is what the portal features run besides the API: the one
// listening connection that wakes the inbox streams (SSE).
type portal struct {
	live     *inbox.Listener
	stopLive context.CancelFunc
}

func newPortal(cfg config.Config, pool *pgxpool.Pool, bus *busRoutes, logger *slog.Logger) (*portal, error) {
	live, err := inbox.NewListener(inbox.ListenerConfig{Pool: pool, Logger: logger})
	if err != nil {
		return nil, err
	}
	return &portal{live: live}, nil
}

// start runs the listener until ctx ends or stopStreams.
func (p *portal) start(ctx context.Context, wg *sync.WaitGroup) {
	lctx, cancel := context.WithCancel(ctx)
	p.stopLive = cancel
	wg.Go(func() { _ = p.live.Run(lctx) })
}

// stopStreams ends the inbox streams (each gets "bye"): first thing at
// shutdown, since the HTTP server's graceful shutdown waits for them.
func (p *portal) stopStreams() {
	if p.stopLive != nil {
		p.stopLive()
	}
}
