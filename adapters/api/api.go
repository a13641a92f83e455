// Package api is the hub's HTTP API under /api/v1: filing key-person
// records up to the Ministry (备案), reading the records the hub holds with
// their history, controls and verification tasks, signing tasks, following
// filings that await a receipt; the portal's warnings and leads; the city
// bureau's dispatch orders with the units' feedback (dispatch.go). The OpenAPI 3.0 document of every
// endpoint is served at /api/v1/openapi.json, the AsyncAPI 3.0 document of
// the internal events (generated from contracts/events) at
// /api/v1/asyncapi.json; both to any identified caller.
//
// Every request carries an identity (auth.Authenticator, see package
// adapters/auth): the security gateway's officer certificate, a bearer
// token of the unified portal, or the development identity of the
// X-Dev-User, X-Dev-Unit and X-Dev-Roles headers (only when
// Config.DevIdentity is true; the configuration refuses it in production);
// otherwise every request is answered 401. The roles granted locally
// (Config.Access) are added to the identity's; a locked account is 401.
//
// Authorization: each endpoint needs a permission (auth.RolePermissions:
// officer reads, files and signs; unmask unmasks; sysadmin locks accounts;
// secadmin binds certificates and grants business roles; auditor reads the
// audit log). An administrator's role gives its own permissions only, so
// none of the three administrators can do another's work, nor an
// officer's. A refusal is 403 E403, audited (authz.denied). Records are
// bounded by the unit tree (Config.Units): a user sees the persons of their
// unit and of the units below it.
//
// Personal data is masked by default: the ID number and name with
// registry.MaskIDNo and registry.MaskName, addresses by MaskAddress, the
// birth date down to its year; the ID and mobile numbers in a lead's text
// with MaskText. Clear values need the permission person.unmask (role
// "unmask") and a stated reason. Every read of a person's record, history or controls and
// every search by ID number is audited before the data is returned; a
// failed audit fails the request.
//
// Answers are JSON with English camelCase names; errors are
// {"code":"E…","message":"<Chinese text>"}. Nothing here filters, scores or
// counts people by ethnicity, religion or health (the records carry no such
// data).
//
// Decisions:
//
//   - A person outside the caller's unit scope is answered 404 E131 with
//     the message of an unknown person (the API does not confirm that the
//     record exists), and the refused read is audited with result
//     "denied" and reason 超出数据范围; a search by ID number leaves such
//     persons out (the audit counts them); a filing about such a person is
//     404 likewise, a registration for a unit outside the scope 403. Tasks
//     and filings (no personal data) are not bounded by the scope yet.
//   - The administrators' changes (certificate bindings, role grants,
//     account locks) need a stated reason and stage their audit entry in
//     their own transaction. Administrators' roles are granted at
//     deployment only, never through the API; nobody grants, revokes,
//     locks or unlocks themselves.
//   - Status of a refusal by code: E100 and E102 → 400, E120-E122 → 422
//     (the message names the field path), E130 → 409, E131 → 404; bad
//     query or path values → 400 E100 naming the parameter; no identity →
//     401 E401; a permission missing → 403 E403; an administrative change
//     conflicting with the stored state → 409 E409; no route → 404 E404;
//     wrong method → 405 E405; anything else → 500 E199.
//   - Each read of personal data writes exactly one audit entry, before the
//     answer: person.read (masked record, history, controls), person.unmask
//     (clear record; result "denied" for a refused attempt, with the
//     refusal as reason), person.search (lookup by ID number; the object is
//     the masked number, never the number). Tasks and filings carry no ID
//     number, name or address (filings are shown without their payload)
//     and are not audited as reads.
//   - task.sign through /tasks/{taskNo}/sign takes personNo, taskNo and
//     corr (the issuing message id) from the task; the unit defaults to
//     the caller's X-Dev-Unit, signedAt to now. POST /filings/{kind}
//     accepts corr (query) for task.sign only.
//   - The auditor reads the audit log by time range, user, unit, object,
//     action and result (GET /audit, keyset-paged by seq), exports the same
//     selection (GET /audit/export) and verifies the chain
//     (GET /audit/verify; a broken chain stages security.chain_break). Each
//     of these is audited itself (audit.read, audit.export, audit.verify),
//     and so is a task export (task.export) although task reads are not:
//     an export takes the data away in bulk. Exports (xlsx or csv) are
//     built whole before they are sent, at most Config.MaxExportRows rows
//     (more: 400).
//   - Logins: the first use of a credential (a bearer token, a gateway
//     certificate, a development user) at this hub process is audited as
//     auth.login (user, unit, roles, method, the credential's digest, its
//     expiry) before the request is served; a refused one as auth.failure.
//     Later uses are in the operation log only.
//   - Log management: the system log (the hub's own events at or above the
//     configured level, store/logs) is read by the system administrator
//     and the auditor (GET /logs/system); the operation log (every call of
//     an identified user: who, what, status, duration, request id) by the
//     auditor only (GET /logs/operations), since it holds the
//     administrators' own actions. Both list newest first, keyset-paged by
//     "before"; each read is audited (log.system.read,
//     log.operation.read). A call refused before authentication (401) is
//     not in the operation log; the audit chain has it (auth.failure).
//   - A filing committed to the outbox whose audit then failed is answered
//     202 (it will be published; answering 500 would invite a second
//     filing) and logged as an error.
//   - Warnings (信息预警, package store/warning) and leads (信息线索,
//     package store/lead) are bounded by the unit tree: a caller sees the
//     warnings one of whose responsible units (now, or before a transfer)
//     is in their subtree, and the leads registered by units of their
//     subtree; others are 404 E131 like unknown ones. A warning step
//     (sign, start, finish, transfer) needs warning.handle and the
//     responsible unit now in the caller's subtree (else 403); the state
//     machine's refusal is 409 E130 naming the state; a bad body member
//     is 422 E120. Each step is audited in its own transaction
//     (warning.<step>), with its event (warning.signed, warning.feedback)
//     in the outbox; reads of warnings are not audited (they carry no ID
//     number, name or address), the export is (warning.export). The
//     officer's number defaults to the caller's user id when that is 6-8
//     digits.
//   - Leads' texts are personal data: a hotline or walk-in account names
//     people with their ID and telephone numbers and addresses. They are
//     stored encrypted (store/lead) and shown masked by default: MaskText
//     masks the 18-character ID numbers (GB 11643 pattern, as MaskIDNo)
//     and the 11-digit mobile numbers (139****5678), full-width digits
//     included; names, addresses, landlines and 15-digit ID numbers are
//     not recognised in free text and stay as written (masking them would
//     need guessing, and the receiving unit has to act on the account).
//     GET /leads/{leadId}?unmask=true shows one lead's text in clear to
//     the permission person.unmask with a stated reason, as for persons
//     (audited lead.unmask before the answer; a refusal audited with
//     result "denied"); lists are masked always. Every read of leads is
//     audited (lead.read: the lead, or the numbers of the listed leads),
//     since masking cannot remove every personal detail from free text.
//     The answer to POST /leads is masked too (the registration itself is
//     audited as lead.register).
//   - OpenAPI forbids two templates that differ only in parameter names, so
//     the document names the parameter of POST /filings/{kind} and
//     GET /filings/{id} "kindOrId".
//   - Portal (消息提醒): every identity with portal.use (officers, portal
//     administrators) has an inbox: the items addressed to them and to
//     their unit (not to the units below: a to-do list, not a view of the
//     tree). GET /inbox is keyset-paged by item id (before), newest first.
//     The three administrators have no inbox. Inbox reads are not audited
//     (no personal data: producers put none in titles and bodies); the
//     export is (inbox.export).
//   - GET /inbox/stream is Server-Sent Events. Each hub process has one
//     listening PostgreSQL connection (Config.Live, inbox.Listener) for
//     every stream; a notification only wakes the streams of the user or
//     unit it names, which then read what is new from the inbox by id, so
//     a lost or coalesced wake-up delays nothing past the next one, and
//     Last-Event-ID (an item id) replays what a reconnecting client
//     missed. The stream lifts the server's write and read deadlines for
//     itself (http.ResponseController), sends a heartbeat comment every
//     Config.Heartbeat, ends when the client goes and says "bye" when the
//     listener stops (the hub stops it before the HTTP server's graceful
//     shutdown, which would otherwise wait for the streams). An item whose
//     transaction commits after one with a higher id was streamed is not
//     streamed (ids are taken before commit); it is in GET /inbox and in
//     the unread counts sent with every wake-up.
//   - System notices (系统公告): authored by notice.manage (the business
//     role portaladmin, granted by the security administrator like any
//     business role; not to an administrator's account) for the units in
//     the author's scope, draft → published → withdrawn (a draft may be
//     edited or deleted; a published one only withdrawn, with a reason).
//     Publishing delivers the reminders at once, one unit item per unit of
//     the audience's subtrees (as of the tree then) carrying the audience
//     roles; which notices a reader sees is computed at read time (unit
//     chain, roles). A notice outside a manager's scope is 404 like an
//     unknown one. Every change is audited in its transaction
//     (notice.create, .update, .delete, .publish, .withdraw).
//   - Smart push (智能推送): a user's rules remind that user (portal.use);
//     a unit's rules remind the unit (push.manage, portaladmin, a unit in
//     scope). A rule's unit scope lies within its owner's scope; a root
//     scope is stored as the whole tree. routes.Push applies the rules to
//     the events of zhian.events. Rules match on kind, category, level and
//     unit only: the events carry no ethnicity, religion or health, and a
//     rule has no field for them (an unknown member is refused, 400).
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/citybus"
	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/sheet"
	"zhianhub/contracts/events"
	"zhianhub/crypto/fieldenc"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/inbox"
	"zhianhub/store/journal"
	"zhianhub/store/lead"
	"zhianhub/store/registry"
	"zhianhub/store/warning"
)

// Prefix is where Mount puts the API.
const Prefix = "/api/v1"

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// Config configures the API.
type Config struct {
	Pool     *pgxpool.Pool
	Registry *registry.Registry
	Filing   *routes.Filing
	Audit    *audit.Writer
	Journal  *journal.Journal
	// DevIdentity accepts the development identity headers
	// (auth.DevHeaders). When false and Authenticator is nil, every request
	// is refused.
	DevIdentity bool
	// Logger receives internal errors. Default: discard.
	Logger *slog.Logger
	// Authenticator identifies the caller. Default: auth.DevHeaders when
	// DevIdentity is true, else auth.Refuse.
	Authenticator auth.Authenticator
	// Now is the clock of defaulted times (a task's signedAt). Default
	// time.Now.
	Now func() time.Time
	// Access adds the locally granted roles to every identity and refuses
	// locked accounts. Default auth.StoreAccess on Pool.
	Access auth.AccessSource
	// Units is the unit tree that bounds what a user sees. Default
	// auth.DemoUnitTree (deploy/units.example.yaml).
	Units *auth.UnitTree
	// Events is the contract registry of the internal events, whose
	// AsyncAPI document is served at /asyncapi.json. Default: compiled by
	// Mount (events.NewRegistry).
	Events *events.Registry
	// AuditKeys returns the verifiers of the audit chain's checkpoint keys
	// (the node's own signing keys: keystore.Store.SelfVerifier), for
	// GET /audit/verify. Required.
	AuditKeys audit.KeyFunc
	// Feedbacks files the units' feedback on dispatch orders to the city
	// bureau; nil when the city bus is off (feedback is then 503).
	Feedbacks *citybus.Feedbacks
	// SkipLoginAudit leaves the first use of a credential unaudited (only
	// for a router without an audit chain, in tests of the documents).
	SkipLoginAudit bool
	// OperationLog receives a record of every call that passed
	// authentication (the operation log); nil keeps none.
	OperationLog OperationLog
	// MaxExportRows is the most rows of one export (GET /audit/export,
	// /tasks/export); more is refused, 400. Default DefaultMaxExportRows.
	MaxExportRows int
	// Warnings and Leads are the portal's warnings and leads. Default:
	// built on Pool and Units (Leads also on Keyring), without city
	// feedback.
	Warnings *warning.Service
	Leads    *lead.Service
	// Live wakes the inbox streams (GET /inbox/stream): the process's one
	// listening connection, run by the caller. Without it the stream is
	// answered 503 E503.
	Live *inbox.Listener
	// Heartbeat is the interval of the comment lines that keep an inbox
	// stream open through proxies. Default DefaultHeartbeat.
	Heartbeat time.Duration
	// Keyring is the field encryption of the default Leads (their texts
	// are stored encrypted); unused when Leads is given.
	Keyring *fieldenc.Keyring
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Authenticator == nil {
		if c.DevIdentity {
			c.Authenticator = auth.DevHeaders{}
		} else {
			c.Authenticator = auth.Refuse{}
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Access == nil && c.Pool != nil {
		c.Access = auth.StoreAccess{Q: c.Pool}
	}
	if c.Units == nil {
		c.Units = auth.DemoUnitTree()
	}
	if c.MaxExportRows == 0 {
		c.MaxExportRows = DefaultMaxExportRows
	}
	c.portalDefaults()
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
}

// Validate reports whether the configuration can be used (after defaults).
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"Pool", c.Pool == nil}, {"Registry", c.Registry == nil}, {"Filing", c.Filing == nil},
		{"Audit", c.Audit == nil}, {"Journal", c.Journal == nil}, {"Logger", c.Logger == nil},
		{"Authenticator", c.Authenticator == nil}, {"Now", c.Now == nil}, {"Access", c.Access == nil}, {"Units", c.Units == nil},
		{"AuditKeys", c.AuditKeys == nil}, {"Warnings", c.Warnings == nil}, {"Leads (or Keyring)", c.Leads == nil},
	} {
		if f.missing {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if c.MaxExportRows < 1 || c.MaxExportRows > sheet.MaxRows {
		errs = append(errs, fmt.Errorf("MaxExportRows must be 1-%d", sheet.MaxRows))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, errors.New("Heartbeat must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("api: invalid config: %w", err)
	}
	return nil
}

// server holds the handlers' dependencies.
type server struct {
	cfg      Config
	asyncAPI []byte // the AsyncAPI document of cfg.Events
}

// Mount adds the API under Prefix to r.
func Mount(r chi.Router, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Events == nil {
		reg, err := events.NewRegistry()
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		cfg.Events = reg
	}
	s := &server{cfg: cfg, asyncAPI: cfg.Events.AsyncAPI()}
	var sessions *auth.Sessions
	if !cfg.SkipLoginAudit {
		sessions = auth.NewSessions(0, 0)
	}
	authenticate, err := auth.Middleware(auth.MiddlewareConfig{Authenticator: cfg.Authenticator, Audit: cfg.Audit,
		Access: cfg.Access, Logger: cfg.Logger, Sessions: sessions, Now: cfg.Now})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	r.Route(Prefix, func(r chi.Router) {
		r.Use(authenticate, s.operationLog)
		r.NotFound(s.handle(func(http.ResponseWriter, *http.Request) error {
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "接口不存在"}
		}))
		r.MethodNotAllowed(s.handle(func(http.ResponseWriter, *http.Request) error {
			return &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethod, Message: "该接口不支持此请求方法"}
		}))
		r.Get("/openapi.json", s.handle(s.openAPIDoc))
		r.Get("/asyncapi.json", s.handle(s.asyncAPIDoc))
		r.Get("/me", s.handle(s.me))

		can := s.require
		r.With(can(auth.PermFilingSubmit)).Post("/filings/{kind}", s.handle(s.postFiling))
		r.With(can(auth.PermFilingRead)).Get("/filings", s.handle(s.listFilings))
		r.With(can(auth.PermFilingRead)).Get("/filings/{id}", s.handle(s.getFiling))

		r.With(can(auth.PermPersonRead)).Get("/persons", s.handle(s.findPersons))
		r.With(can(auth.PermPersonRead)).Get("/persons/{personNo}", s.handle(s.getPerson))
		r.With(can(auth.PermPersonRead)).Get("/persons/{personNo}/history", s.handle(s.personHistory))
		r.With(can(auth.PermPersonRead)).Get("/persons/{personNo}/controls", s.handle(s.personControls))

		r.With(can(auth.PermTaskRead)).Get("/tasks", s.handle(s.listTasks))
		r.With(can(auth.PermTaskRead)).Get("/tasks/export", s.handle(s.exportTasks))
		r.With(can(auth.PermTaskRead)).Get("/tasks/{taskNo}", s.handle(s.getTask))
		r.With(can(auth.PermFilingSubmit)).Post("/tasks/{taskNo}/sign", s.handle(s.signTask))

		r.With(can(auth.PermDispatchRead)).Get("/dispatch/orders", s.handle(s.listOrders))
		r.With(can(auth.PermDispatchRead)).Get("/dispatch/orders/export", s.handle(s.exportOrders))
		r.With(can(auth.PermDispatchRead)).Get("/dispatch/orders/{orderNo}", s.handle(s.getOrder))
		r.With(can(auth.PermFeedbackFile)).Post("/dispatch/orders/{orderNo}/feedback", s.handle(s.postFeedback))

		r.With(can(auth.PermBindingManage)).Get("/admin/cert-bindings", s.handle(s.listBindings))
		r.With(can(auth.PermBindingManage)).Post("/admin/cert-bindings", s.handle(s.createBinding))
		r.With(can(auth.PermBindingManage)).Post("/admin/cert-bindings/{bindingId}/revoke", s.handle(s.revokeBinding))
		r.With(can(auth.PermRoleGrant)).Get("/admin/role-grants", s.handle(s.listGrants))
		r.With(can(auth.PermRoleGrant)).Put("/admin/users/{userId}/roles/{role}", s.handle(s.grantRole))
		r.With(can(auth.PermRoleGrant)).Delete("/admin/users/{userId}/roles/{role}", s.handle(s.revokeRole))
		r.With(can(auth.PermAccountManage)).Get("/admin/account-locks", s.handle(s.listLocks))
		r.With(can(auth.PermAccountManage)).Put("/admin/users/{userId}/lock", s.handle(s.lockAccount))
		r.With(can(auth.PermAccountManage)).Delete("/admin/users/{userId}/lock", s.handle(s.unlockAccount))
		r.With(can(auth.PermAuditRead)).Get("/audit", s.handle(s.listAudit))
		r.With(can(auth.PermAuditRead)).Get("/audit/export", s.handle(s.exportAudit))
		r.With(can(auth.PermAuditRead)).Get("/audit/verify", s.handle(s.verifyAudit))
		r.With(can(auth.PermSystemLogRead)).Get("/logs/system", s.handle(s.listSystemLog))
		r.With(can(auth.PermOpLogRead)).Get("/logs/operations", s.handle(s.listOperationLog))

		r.With(can(auth.PermWarningRead)).Get("/warnings", s.handle(s.listWarnings))
		r.With(can(auth.PermWarningRead)).Get("/warnings/export", s.handle(s.exportWarnings))
		r.With(can(auth.PermWarningRead)).Get("/warnings/{warningId}", s.handle(s.getWarning))
		for _, a := range []string{warning.ActSign, warning.ActStart, warning.ActFinish, warning.ActTransfer} {
			r.With(can(auth.PermWarningHandle)).Post("/warnings/{warningId}/"+a, s.handle(s.stepWarning(a)))
		}
		r.With(can(auth.PermLeadRead)).Get("/leads", s.handle(s.listLeads))
		r.With(can(auth.PermLeadRegister)).Post("/leads", s.handle(s.registerLead))
		r.With(can(auth.PermLeadRead)).Get("/leads/{leadId}", s.handle(s.getLead))

		// Portal: message reminders, system notices, smart-push rules.
		r.With(can(auth.PermPortalUse)).Get("/inbox", s.handle(s.listInbox))
		r.With(can(auth.PermPortalUse)).Get("/inbox/unread", s.handle(s.unreadInbox))
		r.With(can(auth.PermPortalUse)).Post("/inbox/read", s.handle(s.readInbox))
		r.With(can(auth.PermPortalUse)).Get("/inbox/stream", s.handle(s.streamInbox))
		r.With(can(auth.PermPortalUse)).Get("/inbox/export", s.handle(s.exportInbox))
		r.With(can(auth.PermPortalUse)).Get("/notices", s.handle(s.listNotices))
		r.With(can(auth.PermPortalUse)).Get("/notices/{noticeId}", s.handle(s.getNotice))
		r.With(can(auth.PermNoticeManage)).Post("/notices", s.handle(s.createNotice))
		r.With(can(auth.PermNoticeManage)).Put("/notices/{noticeId}", s.handle(s.updateNotice))
		r.With(can(auth.PermNoticeManage)).Delete("/notices/{noticeId}", s.handle(s.deleteNotice))
		r.With(can(auth.PermNoticeManage)).Post("/notices/{noticeId}/publish", s.handle(s.publishNotice))
		r.With(can(auth.PermNoticeManage)).Post("/notices/{noticeId}/withdraw", s.handle(s.withdrawNotice))
		r.With(can(auth.PermPortalUse)).Get("/push-rules", s.handle(s.listPushRules))
		r.With(can(auth.PermPortalUse)).Post("/push-rules", s.handle(s.createPushRule))
		r.With(can(auth.PermPortalUse)).Delete("/push-rules/{ruleId}", s.handle(s.deletePushRule))
	})
	return nil
}

// handle adapts a handler that returns an error: an *Error is answered with
// its status and code, anything else is logged and answered 500 E199.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var e *Error
		if errors.As(err, &e) {
			httpapi.WriteError(w, e.Status, e.Code, e.Message)
			return
		}
		s.cfg.Logger.ErrorContext(r.Context(), "api request failed", "err", err, "method", r.Method,
			"path", r.URL.Path, "request_id", httpapi.RequestID(r.Context()))
		httpapi.WriteError(w, http.StatusInternalServerError, httpapi.CodeInternal, httpapi.MessageInternal)
	}
}

// entry completes an audit entry with the request's identity and id.
func entry(ctx context.Context, e audit.Entry) audit.Entry {
	id, _ := auth.IdentityFrom(ctx)
	if e.Actor == "" {
		e.Actor = id.User
	}
	if e.Unit == "" {
		e.Unit = id.Unit
	}
	if e.Role == "" {
		e.Role = id.RoleList()
	}
	e.CorrelationID = httpapi.RequestID(ctx)
	return e
}

// record appends an audit entry for the request's identity. The entry is
// written even if the client goes away.
func (s *server) record(ctx context.Context, e audit.Entry) error {
	e = entry(ctx, e)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Audit.Append(actx, e); err != nil {
		return fmt.Errorf("api: audit %s: %w", e.Action, err)
	}
	return nil
}

// ActionDenied is the audit action of a request refused for a missing
// permission.
const ActionDenied = "authz.denied"

// require refuses, 403 E403, a request whose identity lacks permission p;
// the refusal is audited (ActionDenied) before the answer.
func (s *server) require(p auth.Permission) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := auth.IdentityFrom(r.Context())
			if id.Can(p) {
				next.ServeHTTP(w, r)
				return
			}
			msg := "无权执行此操作：需要 " + string(p) + " 权限"
			if err := s.record(r.Context(), audit.Entry{Action: ActionDenied, Object: audit.Text(r.URL.Path, 256), Result: "denied",
				Reason: msg, Detail: map[string]any{"permission": string(p), "method": r.Method}}); err != nil {
				s.cfg.Logger.ErrorContext(r.Context(), "audit of a refusal failed", "err", err, "request_id", httpapi.RequestID(r.Context()))
				httpapi.WriteError(w, http.StatusInternalServerError, httpapi.CodeInternal, httpapi.MessageInternal)
				return
			}
			httpapi.WriteError(w, http.StatusForbidden, CodeForbidden, msg)
		})
	}
}
