package inbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrClosed is returned by Subscribe once the listener has stopped.
var ErrClosed = errors.New("inbox: listener stopped")

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// Pool gives the connection settings; the listener opens a connection
	// of its own with them (it does not hold one of the pool's). Required.
	Pool *pgxpool.Pool
	// Logger receives connection failures. Default: discard.
	Logger *slog.Logger
	// MaxBackoff bounds the wait between reconnections. Default 10 s.
	MaxBackoff time.Duration
}

// Validate reports whether the configuration can be used.
func (c ListenerConfig) Validate() error {
	if c.Pool == nil {
		return errors.New("inbox: ListenerConfig.Pool is required")
	}
	if c.MaxBackoff < 0 {
		return errors.New("inbox: ListenerConfig.MaxBackoff must not be negative")
	}
	return nil
}

// Listener is the one connection of a process listening on Channel; it
// wakes the subscriptions a notification concerns (by the payload, in
// constant time: a user's subscriptions and their unit's). A wake-up is a
// signal, not a message: the subscriber reads what is new from the inbox
// itself, so a coalesced or missed signal loses nothing but time. After
// every (re)connection all subscriptions are woken, since notifications
// sent while the connection was down are lost.
type Listener struct {
	cfg ListenerConfig

	mu      sync.Mutex
	subs    map[string]map[*Subscription]struct{} // by notification payload
	stopped bool
	ready   chan struct{} // closed at the first LISTEN
	readyMu sync.Once
}

// NewListener returns a listener; Run starts it.
func NewListener(cfg ListenerConfig) (*Listener, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Listener{cfg: cfg, subs: map[string]map[*Subscription]struct{}{}, ready: make(chan struct{})}, nil
}

// Subscription is one live stream's registration.
type Subscription struct {
	l    *Listener
	keys [2]string
	wake chan struct{}
	done chan struct{}
	once sync.Once
}

// Wake receives a value when something may be new for the viewer.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Done is closed when the listener stops (the server shuts down).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	for _, k := range s.keys {
		if m := s.l.subs[k]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(s.l.subs, k)
			}
		}
	}
	s.once.Do(func() { close(s.done) })
}

// Subscribe registers a live stream of viewer v.
func (l *Listener) Subscribe(v Viewer) (*Subscription, error) {
	s := &Subscription{l: l, keys: [2]string{ToUser + ":" + v.User, ToUnit + ":" + v.Unit},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil, ErrClosed
	}
	for _, k := range s.keys {
		if k == ToUser+":" || k == ToUnit+":" {
			continue
		}
		if l.subs[k] == nil {
			l.subs[k] = map[*Subscription]struct{}{}
		}
		l.subs[k][s] = struct{}{}
	}
	return s, nil
}

// Subscribers returns the number of live subscriptions.
func (l *Listener) Subscribers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[*Subscription]bool{}
	for _, m := range l.subs {
		for s := range m {
			seen[s] = true
		}
	}
	return len(seen)
}

// Ready is closed once the listener has listened for the first time.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// notify wakes the subscriptions of payload (all of them when payload is
// ""), never blocking.
func (l *Listener) notify(payload string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wake := func(m map[*Subscription]struct{}) {
		for s := range m {
			select {
			case s.wake <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
	}
	if payload == "" {
		for _, m := range l.subs {
			wake(m)
		}
		return
	}
	wake(l.subs[payload])
}

// Run listens until ctx ends, reconnecting with backoff; then it ends every
// subscription (Done) and refuses new ones.
func (l *Listener) Run(ctx context.Context) error {
	defer l.stop()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		l.cfg.Logger.Warn("inbox listener lost its connection; reconnecting", "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
	return nil
}

func (l *Listener) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, l.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("inbox listener: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("inbox listener: listen: %w", err)
	}
	l.notify("") // whatever was sent while not listening
	// Ready after that wake-up: a subscription made once Ready returns is
	// woken only by notifications that concern it.
	l.readyMu.Do(func() { close(l.ready) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("inbox listener: %w", err)
		}
		l.notify(n.Payload)
	}
}

func (l *Listener) stop() {
	l.mu.Lock()
	l.stopped = true
	var all []*Subscription
	for _, m := range l.subs {
		for s := range m {
			all = append(all, s)
		}
	}
	l.mu.Unlock()
	for _, s := range all {
		s.once.Do(func() { close(s.done) })
	}
}
