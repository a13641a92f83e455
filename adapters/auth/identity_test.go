package auth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"zhianhub/adapters/auth"
)

func devRequest(user, unit, roles string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if user != "" {
		r.Header.Set(auth.HeaderDevUser, user)
	}
	if unit != "" {
		r.Header.Set(auth.HeaderDevUnit, unit)
	}
	if roles != "" {
		r.Header.Set(auth.HeaderDevRoles, roles)
	}
	return r
}

func TestDevHeaders(t *testing.T) {
	for _, tc := range []struct {
		name              string
		user, unit, roles string
		want              auth.Identity
		errHas            string
		absent            bool
	}{
		{"user only", "li.officer", "", "", auth.Identity{User: "li.officer", Method: auth.MethodDev}, "", false},
		{"all", "li", "310104000000", "officer, unmask,officer", auth.Identity{User: "li", Unit: "310104000000",
			Roles: []string{"officer", "unmask"}, Method: auth.MethodDev}, "", false},
		{"no user", "", "310104000000", "", auth.Identity{}, auth.HeaderDevUser, true},
		{"bad user", "李警官", "", "", auth.Identity{}, auth.HeaderDevUser, false},
		{"bad unit", "li", "3101", "", auth.Identity{}, auth.HeaderDevUnit, false},
		{"bad role", "li", "", "Unmask", auth.Identity{}, auth.HeaderDevRoles, false},
		{"too many roles", "li", "", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", auth.Identity{}, "角色过多", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.DevHeaders{}.Authenticate(devRequest(tc.user, tc.unit, tc.roles))
			if tc.errHas == "" {
				must(t, err)
				if id.User != tc.want.User || id.Unit != tc.want.Unit || id.RoleList() != tc.want.RoleList() || id.Method != tc.want.Method {
					t.Fatalf("identity %+v, want %+v", id, tc.want)
				}
				return
			}
			var ae *auth.AuthError
			if !errors.As(err, &ae) || !strings.Contains(ae.Message, tc.errHas) || ae.Absent != tc.absent {
				t.Fatalf("error %v, want an AuthError naming %q (absent %v)", err, tc.errHas, tc.absent)
			}
		})
	}
}

// fixed is an authenticator with a fixed answer.
type fixed struct {
	id  auth.Identity
	err error
}

func (f fixed) Authenticate(*http.Request) (auth.Identity, error) { return f.id, f.err }

func TestChain(t *testing.T) {
	absentA := fixed{err: &auth.AuthError{Message: "无网关凭证", Absent: true}}
	absentB := fixed{err: &auth.AuthError{Message: "无令牌", Absent: true}}
	refused := fixed{err: &auth.AuthError{Message: "令牌无效"}}
	ok := fixed{id: auth.Identity{User: "li"}}
	for _, tc := range []struct {
		name   string
		chain  auth.Chain
		user   string
		errHas []string
		absent bool
	}{
		{"first absent, second accepts", auth.Chain{absentA, ok}, "li", nil, false},
		{"a refusal decides", auth.Chain{absentA, refused, ok}, "", []string{"令牌无效"}, false},
		{"all absent", auth.Chain{absentA, absentB}, "", []string{"未提供身份凭证", "无网关凭证", "无令牌"}, true},
		{"one absent", auth.Chain{absentA}, "", []string{"无网关凭证"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.chain.Authenticate(httptest.NewRequest(http.MethodGet, "/", nil))
			if tc.errHas == nil {
				if err != nil || id.User != tc.user {
					t.Fatalf("identity %+v, error %v", id, err)
				}
				return
			}
			var ae *auth.AuthError
			if !errors.As(err, &ae) || ae.Absent != tc.absent {
				t.Fatalf("error %v", err)
			}
			for _, p := range tc.errHas {
				if !strings.Contains(ae.Message, p) {
					t.Errorf("message %q lacks %q", ae.Message, p)
				}
			}
		})
	}
}

// staticAccess is an AccessSource over a map.
type staticAccess map[string]auth.Access

func (s staticAccess) Access(_ context.Context, user string) (auth.Access, error) {
	if user == "broken" {
		return auth.Access{}, errors.New("database down")
	}
	return s[user], nil
}

// TestMiddleware: the identity reaches the handler with the local roles
// added; refusals are 401 E401 and audited, a security refusal as
// security.auth_failure, a locked account as auth.failure.
func TestMiddleware(t *testing.T) {
	db := newAuditDB(t)
	access := staticAccess{
		"li":   {Roles: []string{"unmask"}},
		"zhao": {Locked: true, LockReason: "离职"},
	}
	mw, err := auth.Middleware(auth.MiddlewareConfig{
		Authenticator: auth.Chain{fixed{err: &auth.AuthError{Message: "无网关凭证", Absent: true}}, auth.DevHeaders{}},
		Audit:         db.writer, Access: access,
	})
	must(t, err)
	srv := httptest.NewServer(mw(http.HandlerFunc(whoami)))
	defer srv.Close()
	get := func(user, roles string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/x", nil)
		if user != "" {
			req.Header.Set(auth.HeaderDevUser, user)
		}
		if roles != "" {
			req.Header.Set(auth.HeaderDevRoles, roles)
		}
		resp, err := srv.Client().Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("li", "officer"); code != 200 || body != "li||officer,unmask|dev" {
		t.Fatalf("li: %d %s", code, body)
	}
	if code, body := get("wang", ""); code != 200 || body != "wang|||dev" {
		t.Fatalf("wang: %d %s", code, body)
	}
	for _, tc := range []struct{ user, msg string }{
		{"", "未提供身份凭证"}, {"zhao", "账号已停用"}, {"broken", "暂不可用"},
	} {
		code, body := get(tc.user, "")
		if code != 401 || !strings.Contains(body, `"code":"E401"`) || !strings.Contains(body, tc.msg) {
			t.Errorf("%q: %d %s", tc.user, code, body)
		}
	}
	fails := db.entries(t, auth.ActionFailure)
	if len(fails) != 3 || fails[0].Actor != "anonymous" || fails[0].Object != "/api/v1/x" || fails[0].Result != "denied" ||
		fails[1].Detail["claimedUser"] != "zhao" || fails[1].Detail["lockReason"] != "离职" || fails[2].Detail["claimedUser"] != "broken" {
		t.Fatalf("auth.failure entries: %+v", fails)
	}

	// A security refusal.
	mw, err = auth.Middleware(auth.MiddlewareConfig{Audit: db.writer,
		Authenticator: fixed{err: &auth.AuthError{Message: "网关凭证无效", Security: true, Detail: map[string]any{"forged": []string{"X-SSL-Client-Cert"}}}}})
	must(t, err)
	rec := httptest.NewRecorder()
	mw(http.HandlerFunc(whoami)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/y", nil))
	if rec.Code != 401 {
		t.Fatalf("security refusal: %d", rec.Code)
	}
	sec := db.entries(t, auth.ActionSecurityFailure)
	if len(sec) != 1 || sec[0].Reason != "网关凭证无效" || sec[0].Detail["remote"] == "" || sec[0].Detail["forged"] == nil {
		t.Fatalf("security.auth_failure entries: %+v", sec)
	}

	if _, err := auth.Middleware(auth.MiddlewareConfig{}); err == nil || !strings.Contains(err.Error(), "Authenticator is required") ||
		!strings.Contains(err.Error(), "Audit is required") {
		t.Errorf("empty config: %v", err)
	}
}
