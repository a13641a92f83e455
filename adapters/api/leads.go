package api

import (
	"errors"
	"net/http"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/envelope"
	"zhianhub/store/lead"
	"zhianhub/store/warning"
)

// Leads (信息线索): POST /leads registers one (merged into an earlier lead
// with the same content, see package store/lead), GET /leads lists the
// leads of the caller's subtree, GET /leads/{leadId} shows one with its
// duplicates. The text is shown as it was registered.

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
	if c.Leads == nil && c.Pool != nil {
		c.Leads, _ = lead.New(lead.Config{Pool: c.Pool, Now: c.Now, AuditNotify: notify, Logger: c.Logger})
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
	LeadID       string         `json:"leadId"`
	Source       string         `json:"source"`
	SourceName   string         `json:"sourceName"`
	Category     string         `json:"category"`
	Content      string         `json:"content"`
	Region       string         `json:"region"`
	Unit         string         `json:"unit"`
	UnitName     string         `json:"unitName,omitempty"`
	Officer      string         `json:"officer"`
	RegisteredAt time.Time      `json:"registeredAt"`
	MergedInto   string         `json:"mergedInto,omitempty"`
	Via          string         `json:"via"`
	CreatedAt    time.Time      `json:"createdAt"`
	Duplicates   []leadLinkView `json:"duplicates,omitempty"`
}

func (s *server) viewLead(l lead.Lead) leadView {
	v := leadView{LeadID: l.LeadID, Source: l.Source, SourceName: lead.SourceNames[l.Source], Category: l.Category, Content: l.Content,
		Region: l.Region, Unit: l.Unit, UnitName: s.cfg.Units.Name(l.Unit), Officer: l.Officer, RegisteredAt: local(l.RegisteredAt),
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
	list, err := lead.List(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]leadView, 0, len(list))
	for _, l := range list {
		out = append(out, s.viewLead(l))
	}
	body := map[string]any{"leads": out}
	if len(list) == f.Limit {
		body["next"] = list[len(list)-1].LeadID
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
	return nil
}

// getLead answers GET /leads/{leadId}.
func (s *server) getLead(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id, err := numberParam(r, "leadId", 20)
	if err != nil {
		return err
	}
	l, err := lead.Get(r.Context(), s.cfg.Pool, id, s.scopeOf(r.Context()))
	if errors.Is(err, lead.ErrNotFound) {
		return unknownLead(id)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, s.viewLead(l))
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
	httpapi.WriteJSON(w, http.StatusCreated, s.viewLead(l))
	return nil
}
