package dispatch_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/store/dispatch"
	"zhianhub/store/registry"
	"zhianhub/store/storetest"
)

func TestApplyOrderIdempotentAndFeedbackNumbers(t *testing.T) {
	pool := storetest.NewPool(t)
	ctx := context.Background()
	s := dispatch.New()
	apply := func(m registry.Message) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.Apply(ctx, tx, m) })
	}
	o := &contracts.Order{OrderNo: "31000020261127000001", RefHeader: contracts.RefHeader{RefNo: "31000020261127000001", Seq: 1},
		Title: "巡逻", Content: "内容", Level: 1, TargetUnits: []string{"310101000000"}, Deadline: time.Now(), IssuedBy: "123456"}
	id := uuid.NewString()
	msg := registry.Message{ID: id, Direction: registry.In, Node: "310000000001", Kind: contracts.KindDispatchOrder, Payload: o, At: time.Now()}
	if err := apply(msg); err != nil {
		t.Fatal(err)
	}
	if err := apply(msg); !errors.Is(err, registry.ErrAlreadyApplied) {
		t.Fatalf("the same message again: %v", err)
	}
	msg.ID = uuid.NewString()
	var se *dispatch.StateError
	if err := apply(msg); !errors.As(err, &se) || se.Code != "E130" {
		t.Fatalf("another message for the orderNo: %v", err)
	}
	// A wiring error (an order filed outward) is ErrInvalid, not a bus code.
	msg.Direction = registry.Out
	if err := apply(msg); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("outbound order: %v", err)
	}
	at := time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC) // 2026-11-28 in Shanghai
	a, err := dispatch.NextFeedbackNo(ctx, pool, at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := dispatch.NextFeedbackNo(ctx, pool, at)
	if !regexp.MustCompile(`^31000020261128[0-9]{6}$`).MatchString(a) || a == b {
		t.Fatalf("feedback numbers %s, %s", a, b)
	}
}
