package apiload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
)

// Client calls the hub's API.
type Client struct {
	// Base is the hub's base URL (Hub.Base).
	Base string
	HTTP *http.Client
}

// NewClient returns a client whose transport keeps up to conns idle
// connections to the hub (one per simulated user: each is a browser with
// keep-alive).
func NewClient(base string, conns int) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.MaxConnsPerHost = conns, conns, 0
	return &Client{Base: base, HTTP: &http.Client{Transport: t, Timeout: 30 * time.Second}}
}

// Do sends one request with the bearer token and returns the status and
// the body.
func (c *Client) Do(ctx context.Context, method, path, token string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Person is a seeded person.
type Person struct {
	PersonNo, IDNo, Unit string
}

// Task is a seeded verification task.
type Task struct {
	TaskNo, PersonNo, Unit string
}

// Dataset is what Seed registered and SeedOrders sent.
type Dataset struct {
	Persons []Person
	Tasks   []Task
	Orders  []Order
}

// SeedConfig configures Seed.
type SeedConfig struct {
	// Persons is the number of persons to register. Required.
	Persons int
	// TaskEvery files a verification task for every n-th person. Default 3.
	TaskEvery int
	// Units are the record units, used in turn. Required.
	Units []string
	// Token is a bearer token with filing.submit whose unit sees all Units.
	// Required.
	Token string
	// Workers is the number of concurrent filers. Default 8.
	Workers int
	// Seed makes the persons reproducible; 0 draws at random.
	Seed uint64
}

// Validate reports whether the configuration can be used (after defaults).
func (c SeedConfig) Validate() error {
	var errs []error
	if c.Persons < 1 {
		errs = append(errs, errors.New("Persons must be at least 1"))
	}
	if c.TaskEvery < 1 {
		errs = append(errs, errors.New("TaskEvery must be at least 1"))
	}
	if len(c.Units) == 0 {
		errs = append(errs, errors.New("Units is required"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("Token is required"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("Workers must be at least 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apiload: invalid seed config: %w", err)
	}
	return nil
}

type filing struct {
	kind    string
	payload []byte
}

// Seed registers cfg.Persons fictitious persons (mpssim.Generator) through
// the hub's own filing path, POST /filings/keyperson.register, their
// units taken from cfg.Units in turn, and for every cfg.TaskEvery-th person
// a verification task (POST /filings/keyperson.task) assigned to the
// person's unit. Any refusal stops the seeding.
func Seed(ctx context.Context, c *Client, cfg SeedConfig) (*Dataset, error) {
	if cfg.TaskEvery == 0 {
		cfg.TaskEvery = 3
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gen, err := mpssim.NewGenerator(mpssim.GeneratorConfig{Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	d := &Dataset{Persons: make([]Person, cfg.Persons)}
	work := make([][]filing, cfg.Persons) // per person, in order
	for i := range cfg.Persons {
		story := gen.NewStory(now)
		_, raw, _ := story.Next(now, 1) // keyperson.register
		var p contracts.Person
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("apiload: generated person: %w", err)
		}
		p.Unit = cfg.Units[i%len(cfg.Units)]
		reg, err := json.Marshal(&p)
		if err != nil {
			return nil, err
		}
		d.Persons[i] = Person{PersonNo: p.PersonNo, IDNo: p.IDNo, Unit: p.Unit}
		work[i] = []filing{{contracts.KindRegister, reg}}
		if i%cfg.TaskEvery == 0 {
			t := contracts.Task{Header: contracts.Header{PersonNo: p.PersonNo, Seq: 1}, TaskNo: gen.SerialNo(now),
				Items: []string{contracts.ItemIdentity, contracts.ItemAddress}, AssignedUnit: p.Unit,
				Deadline: now.Add(7 * 24 * time.Hour).Truncate(time.Second), Note: "请核实现住址（压测数据）"}
			b, err := json.Marshal(&t)
			if err != nil {
				return nil, err
			}
			work[i] = append(work[i], filing{contracts.KindTask, b})
			d.Tasks = append(d.Tasks, Task{TaskNo: t.TaskNo, PersonNo: p.PersonNo, Unit: p.Unit})
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan []filing)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for fs := range next {
				for _, f := range fs {
					status, body, err := c.Do(ctx, http.MethodPost, "/api/v1/filings/"+f.kind, cfg.Token, f.payload)
					if err == nil && status != http.StatusAccepted {
						err = fmt.Errorf("status %d: %s", status, body)
					}
					if err != nil {
						cancel(fmt.Errorf("apiload: seed %s: %w", f.kind, err))
						return
					}
				}
			}
		})
	}
feed:
	for _, fs := range work {
		select {
		case next <- fs:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// WaitPublished waits until the hub has published every filing (none is
// pending in its outbox), so that the load runs against a hub at rest.
func WaitPublished(ctx context.Context, c *Client, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		status, body, err := c.Do(ctx, http.MethodGet, "/api/v1/filings?state=pending&limit=1", token, nil)
		if err != nil {
			return fmt.Errorf("apiload: pending filings: %w", err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("apiload: pending filings: status %d: %s", status, body)
		}
		var v struct {
			Filings []json.RawMessage `json:"filings"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("apiload: pending filings: %w", err)
		}
		if len(v.Filings) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apiload: filings still pending after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
