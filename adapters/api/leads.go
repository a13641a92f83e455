package api

import (
	"errors"
	"net/http"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/envelope"
	"zhianhub/store/audit"
	"zhianhub/store/lead"
	"zhianhub/store/warning"
)

// Leads (信息线索): POST /leads registers one (merged into an earlier lead
// with the same content, see package store/lead), GET /leads lists the
// leads of the caller's subtree, GET /leads/{leadId} shows one with its
// duplicates. A lead's text is an account that routinely names people
// with their ID and telephone numbers: it is shown with those numbers
// masked (MaskText), in clear only by GET /leads/{leadId}?unmask=true with
// the permission person.unmask and a stated reason. Every read is audited
// before the answer (lead.read, lead.unmask).

// Audit actions of lead reads.
const (
	ActionLeadRead   = "lead.read"   // a read of leads with their texts masked (one lead, or a list)
	ActionLeadUnmask = "lead.unmask" // a read of a lead's text in clear (role unmask and a reason)
)

// portalDefaults builds the warnings and leads services on Pool when the
// configuration has none (without city feedback: serve wires that).
func (c *Config) portalDefaults() {
	var notify func()
	if c.Audit != nil {
		notify = c.Audit.Notify
	}
	if c.Warnings == nil && c.Pool != nil && c.Units != nil {
		c.Warnings, _ = warning.New(warning.Config{Pool: c.Pool, Units: c.Units, Now: c.Now, AuditNotify: notify, Logger: c.Logger})
	}
	if c.Leads == nil && c.Pool != nil && c.Keyring != nil {
		c.Leads, _ = lead.New(lead.Config{Pool: c.Pool, Keyring: c.Keyring, Now: c.Now, AuditNotify: notify, Logger: c.Logger})
	}
}

func unknownLead(id string) *Error { return notFound("线索编号 %s 不存在", id) }

type leadLinkView struct {
	LeadID       string    `json:"leadId"`
	Unit         string    `json:"unit"`
	Officer      string    `json:"officer"`
	Source       string    `json:"source"`
	Via          string    `json:"via"`
	RegisteredAt time.Time `json:"registeredAt"`
}

type leadView struct {
	LeadID       string    `json:"leadId"`
	Source       string    `json:"source"`
	SourceName   string    `json:"sourceName"`
	Category     string    `json:"category"`
	Content      string    `json:"content"`
	Region       string    `json:"region"`
	Unit         string    `json:"unit"`
	UnitName     string    `json:"unitName,omitempty"`
	Officer      string    `json:"officer"`
	RegisteredAt time.Time `json:"registeredAt"`
	MergedInto   string    `json:"mergedInto,omitempty"`
	Via          string    `json:"via"`
	CreatedAt    time.Time `json:"createdAt"`
	// Masked: the ID and mobile numbers in Content are masked.
	Masked     bool           `json:"masked"`
	Duplicates []leadLinkView `json:"duplicates,omitempty"`
}

// viewLead shows a lead; masked: its text through MaskText.
func (s *server) viewLead(l lead.Lead, masked bool) leadView {
	content := l.Content
	if masked {
		content = MaskText(content)
	}
	v := leadView{LeadID: l.LeadID, Source: l.Source, SourceName: lead.SourceNames[l.Source], Category: l.Category, Content: content,
		Masked: masked, Region: l.Region, Unit: l.Unit, UnitName: s.cfg.Units.Name(l.Unit), Officer: l.Officer, RegisteredAt: local(l.RegisteredAt),
		MergedInto: l.MergedInto, Via: l.Via, CreatedAt: local(l.CreatedAt)}
	for _, d := range l.Duplicates {
		v.Duplicates = append(v.Duplicates, leadLinkView{LeadID: d.LeadID, Unit: d.Unit, Officer: d.Officer, Source: d.Source,
			Via: d.Via, RegisteredAt: local(d.RegisteredAt)})
	}
	return v
}

// listLeads answers GET /leads?category=&primary=&limit=&before=.
func (s *server) listLeads(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "category", "primary", "limit", "before")
	if err != nil {
		return err
	}
	f := lead.Filter{Scope: s.scopeOf(r.Context())}
	if v, ok := q["category"]; ok {
		if !isDigits(v, 4) {
			return badRequest("category：须为 4 位类别代码")
		}
		f.Category = v
	}
	if f.Primary, err = boolParam(q, "primary"); err != nil {
		return err
	}
	if v, ok := q["before"]; ok {
		if !isDigits(v, 20) {
			return badRequest("before：须为 20 位线索编号")
		}
		f.Before = v
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	list, err := s.cfg.Leads.List(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]leadView, 0, len(list))
	ids := make([]string, 0, len(list))
	for _, l := range list {
		out = append(out, s.viewLead(l, true))
		ids = append(ids, l.LeadID)
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionLeadRead, Object: "leads", Result: "ok",
		Detail: map[string]any{"view": "list", "masked": true, "leadIds": ids}}); err != nil {
		return err // no audit, no data
	}
	httpapi.WriteJSON(w, http.StatusOK, page("leads", out, len(list), f.Limit, func() string { return list[len(list)-1].LeadID }))
	return nil
}

// getLead answers GET /leads/{leadId}?unmask=&reason=: the lead with its
// text masked, in clear with unmask=true, the role and a reason.
func (s *server) getLead(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := query(r, "unmask", "reason")
	if err != nil {
		return err
	}
	id, err := numberParam(r, "leadId", 20)
	if err != nil {
		return err
	}
	unmask, err := boolParam(q, "unmask")
	if err != nil {
		return err
	}
	reason, err := reasonParam(q)
	if err != nil {
		return err
	}
	if unmask {
		if err := s.allowUnmaskAs(ctx, ActionLeadUnmask, id, reason); err != nil {
			return err
		}
	}
	l, err := s.cfg.Leads.Get(ctx, s.cfg.Pool, id, s.scopeOf(ctx))
	if errors.Is(err, lead.ErrNotFound) {
		return unknownLead(id)
	}
	if err != nil {
		return err
	}
	e := audit.Entry{Action: ActionLeadRead, Object: id, Result: "ok", Reason: reason, Detail: map[string]any{"view": "lead", "masked": !unmask}}
	if unmask {
		e.Action, e.Role = ActionLeadUnmask, RoleUnmask
	}
	if err := s.record(ctx, e); err != nil {
		return err // no audit, no data
	}
	httpapi.WriteJSON(w, http.StatusOK, s.viewLead(l, !unmask))
	return nil
}

// LeadRequest is the body of POST /leads.
type LeadRequest struct {
	Source   string `json:"source"`
	Category string `json:"category"`
	Content  string `json:"content"`
	// Region defaults to the unit's county; Unit to the caller's unit.
	Region string `json:"region,omitempty"`
	Unit   string `json:"unit,omitempty"`
	// Officer defaults to the caller's user id when it is an officer's
	// number; RegisteredAt (RFC 3339) to now.
	Officer      string `json:"officer,omitempty"`
	RegisteredAt string `json:"registeredAt,omitempty"`
}

// registerLead answers POST /leads: 201 with the lead (mergedInto names
// the earlier lead it duplicates).
func (s *server) registerLead(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := query(r); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req LeadRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(ctx)
	if req.Unit == "" {
		req.Unit = id.Unit
	}
	if req.Officer == "" && isDigitsBetween(id.User, 6, 8) {
		req.Officer = id.User
	}
	if req.Unit != "" && !s.cfg.Units.InScope(id.Unit, req.Unit) {
		return forbidden("不能为管辖范围以外的单位登记线索")
	}
	reg := lead.Registration{Source: req.Source, Category: req.Category, Content: req.Content, Region: req.Region, Unit: req.Unit,
		Officer: req.Officer, Via: lead.ViaAPI, Actor: id.User, ActorUnit: id.Unit, Role: id.RoleList(), CorrelationID: httpapi.RequestID(ctx)}
	if req.RegisteredAt != "" {
		t, err := time.Parse(time.RFC3339, req.RegisteredAt)
		if err != nil {
			return &Error{Status: http.StatusUnprocessableEntity, Code: string(envelope.CodeSchema), Message: "registeredAt：须为 RFC 3339 时间"}
		}
		if t.After(s.cfg.Now().Add(5 * time.Minute)) {
			return &Error{Status: http.StatusUnprocessableEntity, Code: string(envelope.CodeSchema), Message: "registeredAt：不能晚于当前时间"}
		}
		reg.RegisteredAt = t
	}
	l, _, err := s.cfg.Leads.Register(ctx, reg)
	var ie *lead.InvalidError
	if errors.As(err, &ie) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: string(envelope.CodeSchema), Message: ie.Reason}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/leads/"+l.LeadID)
	httpapi.WriteJSON(w, http.StatusCreated, s.viewLead(l, true))
	return nil
}
