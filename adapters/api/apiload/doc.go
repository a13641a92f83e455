// Package apiload is the API load bench of issue 4: it starts the real hub
// as a separate process (`zhianhub serve`, the built binary, on a database,
// a Ministry bus exchange and a city feedback bus exchange of its own),
// with OIDC bearer authentication against a real provider
// (adapters/auth/oidctest); seeds persons and tasks through the hub's own
// filing API and dispatch orders over the city bus (SeedOrders), which the
// hub puts in the target units' inboxes; then runs simulated officers, each
// with a token of their own, in a closed loop of a weighted mix of calls
// (DefaultMix: person, task and filing reads, /me, inbox list and unread
// counts, dispatch orders, and a unit's feedback on an order), after a
// baseline of GET /me alone at the same concurrency.
// The Report gives per operation and in total the calls, errors (any
// non-2xx or transport error, by cause), p50, p99, max and calls per
// second, the ratios to the baseline, the hub's peak RSS (VmHWM of
// /proc/<pid>/status) and the targets with PASS or FAIL.
//
// BenchmarkAPILoad (make bench-api, part of make bench) runs it with
// ZHIANHUB_LOAD_USERS (default 200), ZHIANHUB_LOAD_DURATION (60s),
// ZHIANHUB_LOAD_BASELINE (10s), ZHIANHUB_LOAD_PERSONS (3000),
// ZHIANHUB_LOAD_THINK (1s) and ZHIANHUB_LOAD_SATURATION (15s, 0 skips it);
// TestLoadSmoke runs it small in make test.
//
// Decisions:
//
//   - A separate process, not serve in-process: the hub's RSS must not
//     include the load generator's, and the hub is measured as deployed.
//     The binary is ZHIANHUB_BIN (make bench-api passes bin/zhianhub), else
//     built by the test.
//   - Bearer tokens, not the security gateway: a token per user (sub = the
//     user id, unit and role officer in the claims) is the portal's way;
//     the gateway would need 200 client certificates and bindings for no
//     different hub path after authentication (the local roles lookup is
//     done for both).
//   - Seeding through POST /filings (register, task): the records go
//     through validation, field encryption, the registry and the outbox as
//     in production. The Ministry bus of the run has a Ministry queue that
//     keeps what the relay publishes; no receipts come back, so the
//     resends are put off (ZHIANHUB_RESEND_INITIAL=1h) to keep them out of
//     the measured minute. The load starts once nothing is pending.
//   - Dispatch orders are seeded as the city bureau sends them: sealed
//     with its demo keys (`keys gen --demo-peers`, peers/310000000001) and
//     published with confirms to the hub's city queue, so they go through
//     the hub's inbound route (envelope, contract, store/dispatch, the
//     inbox delivery, the receipt) as in production; the load starts once
//     GET /dispatch/orders lists them all. The bench owns the run's city
//     bus exchange (DeclareCityBus) with the city bureau's queue, which
//     keeps the receipts and the feedback the relay publishes (an
//     unroutable publish is an error to the relay); nothing answers the
//     feedback, whose resends are put off like the filings'.
//   - Orders target every unit of the tree, 24 per unit by default (3
//     units each, in turn), so every user's inbox and order list has real
//     rows (more than a page of 20) whatever their unit.
//   - The feedback of the mix (5 % of the calls) is in_progress, which a
//     unit may report any number of times (store/dispatch: a final result
//     ends the unit's reports), for an order targeting a unit in the
//     user's scope (the user's own, or one below it, named in the body);
//     the officer is the user's 7-digit id. Each one is a write: the
//     feedback history, the unit's state, the outbox row and the audit.
//   - Closed loop (each user waits for its answer), with a think time of
//     about a second (uniform 0.5-1.5 s, starts spread) for the targets:
//     200 officers at once each calling once a second is more than people
//     click. With no think time 200 users only measure the machine's
//     capacity (by Little's law the latency is users / calls per second:
//     on two shared cores about 1 200 calls/s, so about 160 ms whatever the
//     hub does), so that is reported separately, as saturation, without
//     targets. Every call is timed, failed ones included.
//   - The ingress route is off in the bench hub: its queue is one per
//     broker and other hubs (tests, make run) may be using it.
//   - Latency targets are reported, not asserted (the guide: no timed
//     assertions); errors fail the benchmark.
package apiload
