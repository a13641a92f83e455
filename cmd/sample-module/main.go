// Command sample-module shows how an internal module plugs into the hub's
// pub/sub: it connects to RabbitMQ as its own user (created by `zhianhub
// modules apply` from the module ACL), publishes events to the topic
// exchange zhian.ingress (routing key = kind, from = user_id = the module
// name) with publisher confirms and a reply queue for the hub's coded
// rejections, and subscribes to zhian.events with a queue of its own
// (module.<name>.events) bound to the kinds it may read, de-duplicating by
// messageId (delivery is at-least-once).
//
//	sample-module publish   [--url URL] [--kind warning.issued] [--invalid]
//	sample-module subscribe [--url URL] [--kinds warning.issued,lead.registered]
//
// The event contracts are in contracts/events and in the hub's AsyncAPI
// document (GET /api/v1/asyncapi.json).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: sample-module publish   [--url URL] [--kind KIND] [--invalid]
       sample-module subscribe [--url URL] [--kinds K1,K2]`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("sample-module "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("SAMPLE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"), "RabbitMQ URL with the module's own user")
	kind := fs.String("kind", "warning.issued", "kind to publish")
	invalid := fs.Bool("invalid", false, "publish an event that breaks its contract (to see the hub's rejection)")
	kinds := fs.String("kinds", "warning.issued,lead.registered", "kinds to subscribe to, comma-separated")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg := Config{URL: *url, Logger: logger}
	switch args[0] {
	case "publish":
		ev, err := sampleEvent(*kind, moduleOf(*url), *invalid)
		if err != nil {
			logger.Error("no sample event", "err", err)
			return 2
		}
		rej, err := Publish(ctx, cfg, *kind, ev, 5*time.Second)
		switch {
		case err != nil:
			logger.Error("publish failed", "err", err)
			return 1
		case rej != nil:
			fmt.Fprintf(stdout, "rejected: %s %s (path %s)\n", rej.Code, rej.Reason, rej.Path)
			return 3
		}
		fmt.Fprintln(stdout, "published (no rejection from the hub)")
		return 0
	case "subscribe":
		err := Subscribe(ctx, cfg, strings.Split(*kinds, ","), func(e Event) error {
			fmt.Fprintf(stdout, "%s %s from %s: %s\n", e.Kind, e.MessageID, e.From, e.Data)
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("subscribe failed", "err", err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
