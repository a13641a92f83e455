package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/contracts"
	"zhianhub/store/registry"
)

func taskNoParam(r *http.Request) (string, error) { return numberParam(r, "taskNo", 20) }

func unknownTask(taskNo string) *Error { return notFound("任务编号 %s 不存在", taskNo) }

// listTasks answers GET /tasks?state=&unit=&limit=&after=: the tasks the
// hub holds in taskNo order; next is the cursor of the following page.
func (s *server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "state", "unit", "limit", "after")
	if err != nil {
		return err
	}
	f, err := taskFilter(q)
	if err != nil {
		return err
	}
	if v, ok := q["after"]; ok {
		if !isDigits(v, 20) {
			return badRequest("after：须为 20 位任务编号")
		}
		f.After = v
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	list, err := s.cfg.Registry.ListTasks(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]taskView, 0, len(list))
	for _, t := range list {
		out = append(out, viewTask(t))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("tasks", out, len(list), f.Limit, func() string { return list[len(list)-1].TaskNo }))
	return nil
}

// taskFilter parses the selection of tasks: state and unit.
func taskFilter(q map[string]string) (registry.TaskFilter, error) {
	var f registry.TaskFilter
	switch st := q["state"]; st {
	case "", registry.TaskIssued, registry.TaskSigned:
		f.State = st
	default:
		return f, badRequest("state：须为 %s 或 %s", registry.TaskIssued, registry.TaskSigned)
	}
	if v, ok := q["unit"]; ok {
		if !isDigits(v, 12) {
			return f, badRequest("unit：须为 12 位机构代码")
		}
		f.Unit = v
	}
	return f, nil
}

// getTask answers GET /tasks/{taskNo}.
func (s *server) getTask(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	taskNo, err := taskNoParam(r)
	if err != nil {
		return err
	}
	t, err := s.cfg.Registry.GetTask(r.Context(), s.cfg.Pool, taskNo)
	if errors.Is(err, registry.ErrNotFound) {
		return unknownTask(taskNo)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewTask(*t))
	return nil
}

// SignRequest is the body of POST /tasks/{taskNo}/sign.
type SignRequest struct {
	// Unit is the signing unit; default the identity's unit.
	Unit string `json:"unit,omitempty"`
	// Officer is the signing officer's number (6-8 digits).
	Officer string `json:"officer"`
	// SignedAt is RFC 3339; default now.
	SignedAt string `json:"signedAt,omitempty"`
}

// signTask answers POST /tasks/{taskNo}/sign: it files keyperson.task.sign
// for the task, with corr = the id of the message that issued it.
func (s *server) signTask(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := query(r); err != nil {
		return err
	}
	taskNo, err := taskNoParam(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req SignRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	t, err := s.cfg.Registry.GetTask(ctx, s.cfg.Pool, taskNo)
	if errors.Is(err, registry.ErrNotFound) {
		return unknownTask(taskNo)
	}
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(ctx)
	payload := map[string]any{"personNo": t.PersonNo, "taskNo": t.TaskNo}
	if req.Unit == "" {
		req.Unit = id.Unit
	}
	if req.Unit != "" {
		payload["unit"] = req.Unit
	}
	if req.Officer != "" {
		payload["officer"] = req.Officer
	}
	if req.SignedAt == "" {
		req.SignedAt = local(s.cfg.Now()).Format("2006-01-02T15:04:05.000Z07:00")
	}
	payload["signedAt"] = req.SignedAt
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return s.file(w, r, contracts.KindTaskSign, b, t.IssuedMsgID)
}
