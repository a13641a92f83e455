package apiload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/contracts"
)

// User is one simulated officer with a token of their own.
type User struct {
	ID, Unit, Token string
	// Persons and Tasks index the Dataset's records in the user's scope.
	Persons, Tasks []int
	// Targets are the dispatch orders' target units in the user's scope:
	// what the user may report feedback for.
	Targets []Target
}

// Target is a target unit of a dispatch order.
type Target struct {
	Order int // index in Dataset.Orders
	Unit  string
}

// MakeUsers makes n users: ids 1000001…, units taken from units in turn,
// each with the token mint returns; the records of d in each user's scope
// (by tree) are noted. A user with no person in scope is an error (the
// person reads would all be 404), and so is one with no dispatch order
// target in scope when d has orders (no feedback to report).
func MakeUsers(n int, units []string, tree *auth.UnitTree, d *Dataset, mint func(user, unit string) (string, error)) ([]*User, error) {
	if n < 1 || len(units) == 0 {
		return nil, errors.New("apiload: MakeUsers needs users and units")
	}
	out := make([]*User, n)
	for i := range n {
		u := &User{ID: fmt.Sprintf("%07d", 1000001+i), Unit: units[i%len(units)]}
		tok, err := mint(u.ID, u.Unit)
		if err != nil {
			return nil, err
		}
		u.Token = tok
		for j, p := range d.Persons {
			if tree.InScope(u.Unit, p.Unit) {
				u.Persons = append(u.Persons, j)
			}
		}
		for j, t := range d.Tasks {
			if tree.InScope(u.Unit, t.Unit) {
				u.Tasks = append(u.Tasks, j)
			}
		}
		for j, o := range d.Orders {
			for _, unit := range o.Units {
				if tree.InScope(u.Unit, unit) {
					u.Targets = append(u.Targets, Target{Order: j, Unit: unit})
				}
			}
		}
		if len(u.Persons) == 0 {
			return nil, fmt.Errorf("apiload: user %s of unit %s has no person in scope: seed more persons", u.ID, u.Unit)
		}
		if len(d.Orders) > 0 && len(u.Targets) == 0 {
			return nil, fmt.Errorf("apiload: user %s of unit %s has no dispatch order target in scope: target every unit", u.ID, u.Unit)
		}
		out[i] = u
	}
	return out, nil
}

// Call is one request of an operation.
type Call struct {
	Method, Path string
	Body         []byte // nil: none
}

// Op is one operation of the mix: a name, its share of the calls, and the
// request a user makes for it.
type Op struct {
	Name   string
	Weight int
	Call   func(u *User, d *Dataset, rnd *rand.Rand) Call
}

// searchReason is the stated reason of the searches by ID number.
var searchReason = url.QueryEscape("核查重点人员信息（压测）")

func pick[T any](rnd *rand.Rand, s []T) T { return s[rnd.IntN(len(s))] }

// personOf returns a person in the user's scope.
func personOf(u *User, d *Dataset, rnd *rand.Rand) Person { return d.Persons[pick(rnd, u.Persons)] }

// taskOf returns a task in the user's scope, else any (tasks are not
// bounded by the scope).
func taskOf(u *User, d *Dataset, rnd *rand.Rand) Task {
	if len(u.Tasks) > 0 {
		return d.Tasks[pick(rnd, u.Tasks)]
	}
	return pick(rnd, d.Tasks)
}

// noOrder is the orderNo of the feedback of a user with no order target
// (no orders seeded): 404, counted as an error.
const noOrder = "00000000000000000000"

// feedbackOf returns the feedback call of a user: in_progress (a unit may
// report it any number of times, store/dispatch) for an order target in
// the user's scope, the user as the officer; the unit is named when it is
// not the user's own (a district officer reporting for a station).
func feedbackOf(u *User, d *Dataset, rnd *rand.Rand) Call {
	orderNo, req := noOrder, map[string]string{"officer": u.ID, "result": contracts.ResultInProgress, "detail": "已派员前往现场处置（压测数据）"}
	if len(u.Targets) > 0 {
		t := pick(rnd, u.Targets)
		orderNo = d.Orders[t.Order].OrderNo
		if t.Unit != u.Unit {
			req["unit"] = t.Unit
		}
	}
	body, _ := json.Marshal(req)
	return Call{Method: http.MethodPost, Path: "/api/v1/dispatch/orders/" + orderNo + "/feedback", Body: body}
}

// DefaultMix is the officers' mix, read-heavy: reads of persons (each
// audited by the hub before it answers), tasks, filings, their own
// identity, their inbox (list and unread counts) and the dispatch orders
// of their units; 5 % of the calls report a unit's feedback on an order
// (filed to the city bureau through the outbox).
var DefaultMix = []Op{
	{"person.get", 20, func(u *User, d *Dataset, rnd *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/persons/" + personOf(u, d, rnd).PersonNo}
	}},
	{"persons.search", 10, func(u *User, d *Dataset, rnd *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/persons?idNo=" + personOf(u, d, rnd).IDNo + "&reason=" + searchReason}
	}},
	{"tasks.list", 10, func(u *User, d *Dataset, rnd *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/tasks?limit=50&unit=" + taskOf(u, d, rnd).Unit}
	}},
	{"task.get", 10, func(u *User, d *Dataset, rnd *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/tasks/" + taskOf(u, d, rnd).TaskNo}
	}},
	{"filings.list", 10, func(u *User, d *Dataset, rnd *rand.Rand) Call {
		if rnd.IntN(2) == 0 {
			return Call{Method: http.MethodGet, Path: "/api/v1/filings?limit=50"}
		}
		return Call{Method: http.MethodGet, Path: "/api/v1/filings?personNo=" + personOf(u, d, rnd).PersonNo}
	}},
	{"me", 10, func(*User, *Dataset, *rand.Rand) Call { return Call{Method: http.MethodGet, Path: "/api/v1/me"} }},
	{"inbox.list", 10, func(*User, *Dataset, *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/inbox?limit=20"}
	}},
	{"inbox.unread", 10, func(*User, *Dataset, *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/inbox/unread"}
	}},
	{"dispatch.list", 5, func(*User, *Dataset, *rand.Rand) Call {
		return Call{Method: http.MethodGet, Path: "/api/v1/dispatch/orders?limit=20"}
	}},
	{"feedback.post", 5, feedbackOf},
}

// BaselineMix is GET /me alone: routing, bearer verification, the local
// roles lookup and JSON, without a handler's own work. The load's figures
// are compared with it.
var BaselineMix = []Op{
	{"me", 1, func(*User, *Dataset, *rand.Rand) Call { return Call{Method: http.MethodGet, Path: "/api/v1/me"} }},
}

// RunConfig configures Run.
type RunConfig struct {
	Client *Client
	Users  []*User
	Data   *Dataset
	Mix    []Op
	// Duration is how long new calls are started.
	Duration time.Duration
	// ThinkTime is each user's mean pause between calls, drawn uniformly
	// from 0.5-1.5 times it (0: no pause).
	ThinkTime time.Duration
	// Seed makes the choices reproducible; 0 draws at random.
	Seed uint64
}

// Validate reports whether the configuration can be used.
func (c RunConfig) Validate() error {
	var errs []error
	if c.Client == nil || c.Data == nil {
		errs = append(errs, errors.New("Client and Data are required"))
	}
	if len(c.Users) == 0 {
		errs = append(errs, errors.New("Users is required"))
	}
	total := 0
	for _, op := range c.Mix {
		if op.Name == "" || op.Weight < 0 || op.Call == nil {
			errs = append(errs, fmt.Errorf("op %q: name, weight >= 0 and Call required", op.Name))
		}
		total += op.Weight
	}
	if total == 0 {
		errs = append(errs, errors.New("Mix has no weight"))
	}
	if c.Duration <= 0 || c.ThinkTime < 0 {
		errs = append(errs, errors.New("Duration must be positive, ThinkTime not negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apiload: invalid run config: %w", err)
	}
	return nil
}

// OpResult is what the calls of one operation gave.
type OpResult struct {
	// Latencies of every call, failed ones included.
	Latencies []time.Duration
	// Errors counts the failed calls by cause: "<status> <code>" for an
	// answer other than 2xx, "transport: <error>" for no answer.
	Errors map[string]int
}

// Result is what a run gave.
type Result struct {
	Users   int
	Elapsed time.Duration // from the first call to the last answer
	Order   []string      // the ops, in mix order
	Ops     map[string]*OpResult
}

// Run starts one goroutine per user; each makes calls of the mix chosen
// by weight, one after the other (pausing about ThinkTime), until Duration
// has passed; calls in flight then are finished and counted.
func Run(ctx context.Context, cfg RunConfig) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	var cum []int
	total := 0
	for _, op := range cfg.Mix {
		total += op.Weight
		cum = append(cum, total)
	}
	res := &Result{Users: len(cfg.Users), Ops: map[string]*OpResult{}}
	for _, op := range cfg.Mix {
		res.Order = append(res.Order, op.Name)
		res.Ops[op.Name] = &OpResult{Errors: map[string]int{}}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(cfg.Duration)
	for i, u := range cfg.Users {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(seed, uint64(i)))
			local := map[string]*OpResult{}
			for _, op := range cfg.Mix {
				local[op.Name] = &OpResult{Errors: map[string]int{}}
			}
			// Users with a think time start spread over it and pause a
			// random 0.5-1.5 times it: in step, they would all call at once.
			pause := func() {
				if cfg.ThinkTime > 0 {
					d := cfg.ThinkTime/2 + time.Duration(rnd.Int64N(int64(cfg.ThinkTime)))
					time.Sleep(min(d, max(0, time.Until(end))))
				}
			}
			if cfg.ThinkTime > 0 {
				time.Sleep(time.Duration(rnd.Int64N(int64(cfg.ThinkTime))))
			}
			for time.Now().Before(end) && ctx.Err() == nil {
				n := rnd.IntN(total)
				op := cfg.Mix[slices.IndexFunc(cum, func(c int) bool { return n < c })]
				call := op.Call(u, cfg.Data, rnd)
				t0 := time.Now()
				status, body, err := cfg.Client.Do(ctx, call.Method, call.Path, u.Token, call.Body)
				r := local[op.Name]
				r.Latencies = append(r.Latencies, time.Since(t0))
				if cause := failure(status, body, err); cause != "" {
					r.Errors[cause]++
				}
				pause()
			}
			mu.Lock()
			defer mu.Unlock()
			for name, r := range local {
				all := res.Ops[name]
				all.Latencies = append(all.Latencies, r.Latencies...)
				for k, v := range r.Errors {
					all.Errors[k] += v
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// failure names why a call failed, "" when it did not.
func failure(status int, body []byte, err error) string {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "transport: " + err.Error()
	}
	if status >= 200 && status < 300 {
		return ""
	}
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &e)
	return fmt.Sprintf("%d %s", status, e.Code)
}
