package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/store/access"
)

// Users of these tests (development identity; the roles in the header).
var (
	cityOfficer    = user{id: "qian.city", unit: "310000000000", roles: "officer"}           // 市局
	minhangOfficer = user{id: "sun.minhang", unit: "310112000000", roles: "officer,unmask"}  // 闵行分局
	stationOfficer = user{id: "zhou.station", unit: "310104010000", roles: "officer,unmask"} // 徐汇分局天平路派出所
	unitless       = user{id: "wu.nounit", roles: "officer,unmask"}
	sysAdmin       = user{id: "sys.admin", unit: "310000000000", roles: auth.RoleSysAdmin}
	secAdmin       = user{id: "sec.admin", unit: "310000000000", roles: auth.RoleSecAdmin}
	auditor        = user{id: "aud.itor", unit: "310000000000", roles: auth.RoleAuditor}
)

// waitAudits waits until n entries of action are chained (administrative
// changes stage theirs in their transaction) and returns them.
func (h *harness) waitAudits(action string, n int) []auditRow {
	h.t.Helper()
	var got []auditRow
	waitFor(h.t, fmt.Sprintf("%d %s entries", n, action), func() bool {
		got = h.audits(action)
		return len(got) >= n
	})
	if len(got) != n {
		h.t.Fatalf("%d %s entries, want %d: %+v", len(got), action, n, got)
	}
	return got
}

// TestScope: a user sees the records of their unit and the units below it;
// a person outside the scope is answered 404 like an unknown one, and the
// refused read is audited; searches leave such persons out; filings about
// them are refused too.
func TestScope(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP))) // 徐汇分局
	reason := url.QueryEscape("核查（测试）")
	path := "/api/v1/persons/" + personP

	// Above and at the unit: seen, masked by default.
	for _, u := range []user{cityOfficer, officer} {
		r := h.call(u, http.MethodGet, path, nil)
		if p := r.json(t); r.status != 200 || p["masked"] != true || p["idNo"] != "310104********1356" {
			t.Fatalf("%s: %d %s", u.id, r.status, r.body)
		}
	}
	// Beside or below the unit, or without one: as unknown.
	for _, u := range []user{minhangOfficer, stationOfficer, unitless} {
		for _, p := range []string{path, path + "/history", path + "/controls", path + "?unmask=true&reason=" + reason} {
			r := h.call(u, http.MethodGet, p, nil)
			expectError(t, r, 404, "E131", personP)
			if strings.Contains(string(r.body), idNoP) || strings.Contains(string(r.body), nameP) {
				t.Fatal("an out-of-scope refusal shows personal data")
			}
		}
		r := h.call(u, http.MethodGet, "/api/v1/persons?idNo="+idNoP+"&reason="+reason, nil)
		if found := r.json(t)["persons"].([]any); r.status != 200 || len(found) != 0 {
			t.Fatalf("%s finds an out-of-scope person: %s", u.id, r.body)
		}
	}
	reads := h.audits(api.ActionPersonRead)
	var denied []auditRow
	for _, a := range reads {
		if a.Result == "denied" {
			denied = append(denied, a)
		}
	}
	if len(reads) != 2+len(denied) || len(denied) != 9 || denied[0].Actor != minhangOfficer.id || denied[0].Reason != "超出数据范围" ||
		denied[0].Detail["personUnit"] != "310104000000" || denied[1].Detail["view"] != "history" {
		t.Fatalf("person.read entries: %+v", reads)
	}
	unmask := h.audits(api.ActionPersonUnmask)
	if len(unmask) != 3 || unmask[0].Result != "denied" || unmask[0].Actor != minhangOfficer.id || unmask[0].Detail["statedReason"] != "核查（测试）" {
		t.Fatalf("person.unmask entries: %+v", unmask)
	}
	search := h.audits(api.ActionPersonSearch)
	if len(search) != 3 || search[0].Detail["outOfScope"] != float64(1) {
		t.Fatalf("person.search entries: %+v", search)
	}

	// Filing: about a person outside the scope, as unknown; a registration
	// for a unit outside it, 403.
	expectError(t, h.call(minhangOfficer, http.MethodPost, "/api/v1/filings/keyperson.change", changePayload()), 404, "E131", personP)
	expectError(t, h.call(minhangOfficer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personNew)), 403, "E403", "310104000000")
	var refused []auditRow
	for _, a := range h.audits("filing.submit") {
		if a.Result == "denied" {
			refused = append(refused, a)
		}
	}
	if len(refused) != 2 || refused[0].Actor != minhangOfficer.id || refused[0].Object != "keyperson.change/"+personP || refused[1].Detail["unit"] != "310104000000" {
		t.Fatalf("refused filings audited: %+v", refused)
	}
	// The 市局 may file about it.
	if r := h.call(cityOfficer, http.MethodPost, "/api/v1/filings/keyperson.change", changePayload()); r.status != 202 {
		t.Fatalf("市局 change: %d %s", r.status, r.body)
	}
}

// adminCase is one request and the status it must get.
type adminCase struct {
	method, path string
	body         any
}

// TestSeparationOfDuties: each administrator may do their own work only;
// none may do another's, nor an officer's; officers may do none of theirs.
// Every refusal is 403 and audited (authz.denied).
func TestSeparationOfDuties(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	reason := map[string]any{"reason": "测试"}
	work := map[string][]adminCase{
		auth.RoleSysAdmin: {
			{http.MethodGet, "/api/v1/admin/account-locks", nil},
			{http.MethodPut, "/api/v1/admin/users/li.officer/lock", reason},
			{http.MethodDelete, "/api/v1/admin/users/li.officer/lock?reason=x", nil},
		},
		auth.RoleSecAdmin: {
			{http.MethodGet, "/api/v1/admin/cert-bindings", nil},
			{http.MethodPost, "/api/v1/admin/cert-bindings", map[string]any{"serial": "A1", "issuer": "CN=测试CA", "user": "li.officer", "unit": "310104000000"}},
			{http.MethodPost, "/api/v1/admin/cert-bindings/1/revoke", reason},
			{http.MethodGet, "/api/v1/admin/role-grants", nil},
			{http.MethodPut, "/api/v1/admin/users/li.officer/roles/unmask", reason},
			{http.MethodDelete, "/api/v1/admin/users/li.officer/roles/unmask?reason=x", nil},
		},
		auth.RoleAuditor: {
			{http.MethodGet, "/api/v1/audit", nil},
		},
		auth.RoleOfficer: {
			{http.MethodGet, "/api/v1/persons/" + personNew, nil},
			{http.MethodGet, "/api/v1/filings", nil},
			{http.MethodGet, "/api/v1/tasks", nil},
		},
	}
	admins := map[string]user{auth.RoleSysAdmin: sysAdmin, auth.RoleSecAdmin: secAdmin, auth.RoleAuditor: auditor,
		auth.RoleOfficer: officer}
	denied := 0
	for role, u := range admins {
		for other, cases := range work {
			for _, c := range cases {
				r := h.call(u, c.method, c.path, c.body)
				if other == role {
					if r.status == 403 {
						t.Errorf("%s refused its own work %s %s: %s", role, c.method, c.path, r.body)
					}
					continue
				}
				expectError(t, r, 403, "E403", "权限")
				denied++
			}
		}
	}
	// Two administrators' roles in one identity give neither's work.
	both := user{id: "two.hats", unit: "310000000000", roles: "secadmin,auditor"}
	for _, c := range append(work[auth.RoleSecAdmin][:1], work[auth.RoleAuditor]...) {
		expectError(t, h.call(both, c.method, c.path, c.body), 403, "E403")
		denied++
	}
	// An administrator's role hides the business roles held with it.
	expectError(t, h.call(user{id: "sec2", unit: "310000000000", roles: "secadmin,officer"}, http.MethodGet, "/api/v1/tasks", nil), 403, "E403")
	denied++
	got := h.audits(api.ActionDenied)
	if len(got) != denied || got[0].Result != "denied" || got[0].Detail["permission"] == "" {
		t.Fatalf("%d authz.denied entries, want %d: %+v", len(got), denied, got[:min(len(got), 2)])
	}
	for _, a := range got {
		if a.Actor == auditor.id && a.Detail["permission"] == string(auth.PermAuditRead) {
			t.Errorf("the auditor was refused its own work: %+v", a)
		}
	}
}

// officerCertPEM issues an SM2 officer certificate and returns its PEM,
// serial (hex) and issuer DN.
func officerCertPEM(t *testing.T, serial int64, cn string) (string, string, string) {
	t.Helper()
	caKey, err := sm2.GenerateKey(rand.Reader)
	must(t, err)
	caTpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "公安数字证书测试CA", Country: []string{"CN"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign}
	caDER, err := smx509.CreateCertificate(rand.Reader, caTpl, caTpl, caKey.Public(), caKey)
	must(t, err)
	ca, err := smx509.ParseCertificate(caDER)
	must(t, err)
	key, err := sm2.GenerateKey(rand.Reader)
	must(t, err)
	tpl := &smx509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Country: []string{"CN"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tpl, ca, key.Public(), caKey)
	must(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), strings.ToUpper(big.NewInt(serial).Text(16)), ca.Subject.String()
}

// tlsClientCert issues an ECDSA TLS client certificate from ca (nil: a
// new CA) and returns it with its CA.
func tlsClientCert(t *testing.T, cn string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn + " CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	must(t, err)
	leaf, err := x509.ParseCertificate(der)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, ca
}

// TestCertBindingsAndGateway: the security administrator binds an
// officer's certificate (audited with the change); the officer, through
// the security gateway, is then that user with the locally granted roles;
// forged gateway headers on a connection without the gateway's certificate
// are 401 and a security event; a revoked binding identifies no one.
func TestCertBindingsAndGateway(t *testing.T) {
	gatewayCert, gatewayCA := tlsClientCert(t, "security-gateway")
	rogueCert, rogueCA := tlsClientCert(t, "rogue")
	cas := x509.NewCertPool()
	cas.AddCert(gatewayCA)
	cas.AddCert(rogueCA)
	h := newHarness(t, harnessOpts{
		tls: &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: cas},
		authn: func(h *harness) auth.Authenticator {
			gw, err := auth.NewGateway(auth.GatewayConfig{Certificates: []*x509.Certificate{gatewayCert.Leaf}, Bindings: auth.BindingStore{Q: h.pool}})
			must(t, err)
			return auth.Chain{gw, auth.DevHeaders{}}
		},
	})
	certPEM, serial, issuer := officerCertPEM(t, 0x1F2E3D, "李警官 1023456")

	// Bindings: create (PEM), refusals, list.
	r := h.call(secAdmin, http.MethodPost, "/api/v1/admin/cert-bindings",
		map[string]any{"certificate": certPEM, "user": "1023456", "unit": "310104000000", "note": "新发证书"})
	b := r.json(t)
	if r.status != 201 || b["serial"] != serial || b["issuer"] != issuer || b["user"] != "1023456" || b["active"] != true || b["createdBy"] != secAdmin.id {
		t.Fatalf("create binding: %d %s", r.status, r.body)
	}
	bindingID := int64(b["id"].(float64))
	expectError(t, h.call(secAdmin, http.MethodPost, "/api/v1/admin/cert-bindings",
		map[string]any{"serial": "00:1f:2e:3d", "issuer": issuer, "user": "other", "unit": "310104000000"}), 409, "E409", "已绑定")
	for _, tc := range []struct {
		body map[string]any
		msg  string
	}{
		{map[string]any{"certificate": "garbage", "user": "x", "unit": "310104000000"}, "certificate"},
		{map[string]any{"serial": "zz", "issuer": issuer, "user": "x", "unit": "310104000000"}, "serial"},
		{map[string]any{"serial": "AB", "user": "x", "unit": "310104000000"}, "issuer"},
		{map[string]any{"serial": "AB", "issuer": issuer, "user": "李", "unit": "310104000000"}, "user"},
		{map[string]any{"serial": "AB", "issuer": issuer, "user": "x", "unit": "320000000000"}, "机构树"},
		{map[string]any{"certificate": certPEM, "serial": "AB", "user": "x", "unit": "310104000000"}, "二选一"},
		{map[string]any{"serial": "AB", "issuer": issuer, "user": "x", "unit": "310104000000", "extra": 1}, "extra"},
	} {
		expectError(t, h.call(secAdmin, http.MethodPost, "/api/v1/admin/cert-bindings", tc.body), 400, "E100", tc.msg)
	}
	r = h.call(secAdmin, http.MethodGet, "/api/v1/admin/cert-bindings?user=1023456", nil)
	if bs := r.json(t)["bindings"].([]any); r.status != 200 || len(bs) != 1 {
		t.Fatalf("list bindings: %s", r.body)
	}
	created := h.waitAudits(api.ActionBindingCreate, 1)[0]
	if created.Actor != secAdmin.id || created.Role != auth.RoleSecAdmin || created.Object != fmt.Sprintf("cert-binding/%d", bindingID) ||
		created.Detail["serial"] != serial || created.Detail["user"] != "1023456" || created.Reason != "新发证书" || created.CorrelationID == "" {
		t.Fatalf("certbinding.create audit: %+v", created)
	}

	// The officer holds officer locally (granted by the security administrator).
	r = h.call(secAdmin, http.MethodPut, "/api/v1/admin/users/1023456/roles/officer", map[string]any{"reason": "入职"})
	if r.status != 201 {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}

	officerHeaders := http.Header{}
	officerHeaders.Set(auth.HeaderClientVerify, "SUCCESS")
	officerHeaders.Set(auth.HeaderClientCert, url.QueryEscape(certPEM))
	officerHeaders.Set(auth.HeaderClientSerial, serial)
	h.header = officerHeaders
	withCert := func(c *tls.Certificate) *http.Client {
		tr := h.srv.Client().Transport.(*http.Transport).Clone()
		if c != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*c}
		}
		return &http.Client{Transport: tr}
	}

	// Forged: TLS without a client certificate, and with a verified
	// certificate that is not the gateway's.
	for i, c := range []*tls.Certificate{nil, &rogueCert} {
		h.client = withCert(c)
		expectError(t, h.call(nobody, http.MethodGet, "/api/v1/me", nil), 401, "E401", "安全网关")
		sec := h.audits(auth.ActionSecurityFailure)
		if len(sec) != i+1 || sec[i].Object != "/api/v1/me" || len(sec[i].Detail["forgedHeaders"].([]any)) != 3 || sec[i].Detail["remote"] == "" {
			t.Fatalf("security event %d: %+v", i, sec)
		}
	}
	// Even with a development identity alongside: the forged headers decide.
	h.client = withCert(nil)
	expectError(t, h.call(cityOfficer, http.MethodGet, "/api/v1/me", nil), 401, "E401", "安全网关")

	// Through the gateway: the bound user, with the local roles.
	h.client = withCert(&gatewayCert)
	r = h.call(nobody, http.MethodGet, "/api/v1/me", nil)
	me := r.json(t)
	if r.status != 200 || me["user"] != "1023456" || me["unit"] != "310104000000" || me["unitName"] != "徐汇分局" || me["method"] != "gateway" ||
		fmt.Sprint(me["roles"]) != "[officer]" || !strings.Contains(fmt.Sprint(me["permissions"]), "person.read") {
		t.Fatalf("me through the gateway: %d %s", r.status, r.body)
	}

	// Revoked: no one.
	h.header, h.client = nil, h.srv.Client()
	r = h.call(secAdmin, http.MethodPost, fmt.Sprintf("/api/v1/admin/cert-bindings/%d/revoke", bindingID), map[string]any{"reason": "证书挂失"})
	if rb := r.json(t); r.status != 200 || rb["active"] != false || rb["revokeReason"] != "证书挂失" || rb["revokedBy"] != secAdmin.id {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	expectError(t, h.call(secAdmin, http.MethodPost, fmt.Sprintf("/api/v1/admin/cert-bindings/%d/revoke", bindingID), map[string]any{"reason": "x"}), 409, "E409")
	expectError(t, h.call(secAdmin, http.MethodPost, "/api/v1/admin/cert-bindings/999/revoke", map[string]any{"reason": "x"}), 404, "E131")
	expectError(t, h.call(secAdmin, http.MethodPost, fmt.Sprintf("/api/v1/admin/cert-bindings/%d/revoke", bindingID), map[string]any{}), 400, "E100", "reason")
	expectError(t, h.call(secAdmin, http.MethodPost, "/api/v1/admin/cert-bindings/abc/revoke", map[string]any{"reason": "x"}), 400, "E100", "bindingId")
	revoked := h.waitAudits(api.ActionBindingRevoke, 1)[0]
	if revoked.Reason != "证书挂失" || revoked.Actor != secAdmin.id {
		t.Fatalf("certbinding.revoke audit: %+v", revoked)
	}
	h.header, h.client = officerHeaders, withCert(&gatewayCert)
	expectError(t, h.call(nobody, http.MethodGet, "/api/v1/me", nil), 401, "E401", "绑定已撤销")
	h.header, h.client = nil, h.srv.Client()
	r = h.call(secAdmin, http.MethodGet, "/api/v1/admin/cert-bindings?all=true&limit=1", nil)
	if page := r.json(t); len(page["bindings"].([]any)) != 1 || page["next"] != fmt.Sprint(bindingID) {
		t.Fatalf("all bindings: %s", r.body)
	}
}

// grantAdmin grants an administrator's role as the deployment's command
// line does (straight into the table).
func grantAdmin(t *testing.T, h *harness, userID, role string) {
	t.Helper()
	must(t, pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error {
		return access.GrantRole(context.Background(), tx, access.Grant{User: userID, Role: role, GrantedBy: "deploy", GrantedAt: time.Now()})
	}))
}

// TestRoleGrants: the security administrator grants and revokes business
// roles with a reason, audited; the grants take effect at the next request;
// the administrators' roles, oneself and administrators' accounts are
// refused.
func TestRoleGrants(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)))
	newcomer := user{id: "zhang.new", unit: "310104000000"} // no roles of its own
	path := "/api/v1/persons/" + personP
	expectError(t, h.call(newcomer, http.MethodGet, path, nil), 403, "E403", "person.read")

	for _, role := range []string{"officer", "unmask"} {
		r := h.call(secAdmin, http.MethodPut, "/api/v1/admin/users/zhang.new/roles/"+role, map[string]any{"reason": "专案组（测试）"})
		if g := r.json(t); r.status != 201 || g["role"] != role || g["grantedBy"] != secAdmin.id || g["reason"] != "专案组（测试）" {
			t.Fatalf("grant %s: %d %s", role, r.status, r.body)
		}
	}
	r := h.call(newcomer, http.MethodGet, path+"?unmask=true&reason="+url.QueryEscape("专案核查"), nil)
	if p := r.json(t); r.status != 200 || p["idNo"] != idNoP {
		t.Fatalf("granted unmask: %d %s", r.status, r.body)
	}
	unmasked := h.audits(api.ActionPersonUnmask)
	if len(unmasked) != 1 || unmasked[0].Actor != newcomer.id || unmasked[0].Reason != "专案核查" || unmasked[0].Result != "ok" {
		t.Fatalf("unmask audit: %+v", unmasked)
	}
	r = h.call(newcomer, http.MethodGet, "/api/v1/me", nil)
	if me := r.json(t); fmt.Sprint(me["roles"]) != "[officer unmask]" || me["method"] != "dev" {
		t.Fatalf("me: %s", r.body)
	}
	r = h.call(secAdmin, http.MethodGet, "/api/v1/admin/role-grants?user=zhang.new", nil)
	if gs := r.json(t)["grants"].([]any); len(gs) != 2 {
		t.Fatalf("grants: %s", r.body)
	}

	grantAdmin(t, h, "ma.sysadmin", auth.RoleSysAdmin)
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		code, msg  string
	}{
		{"again", "zhang.new/roles/unmask", map[string]any{"reason": "x"}, 409, "E409", "已有角色"},
		{"admin role", "zhang.new/roles/auditor", map[string]any{"reason": "x"}, 403, "E403", "命令行"},
		{"oneself", "sec.admin/roles/officer", map[string]any{"reason": "x"}, 403, "E403", "自己"},
		{"administrator's account", "ma.sysadmin/roles/officer", map[string]any{"reason": "x"}, 409, "E409", "管理员账号"},
		{"unknown role", "zhang.new/roles/superuser", map[string]any{"reason": "x"}, 400, "E100", "未知角色"},
		{"no reason", "zhang.new/roles/officer", map[string]any{}, 400, "E100", "reason"},
		{"bad user", "li%20si/roles/officer", map[string]any{"reason": "x"}, 400, "E100", "userId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, h.call(secAdmin, http.MethodPut, "/api/v1/admin/users/"+tc.path, tc.body), tc.status, tc.code, tc.msg)
		})
	}

	r = h.call(secAdmin, http.MethodDelete, "/api/v1/admin/users/zhang.new/roles/unmask?reason="+url.QueryEscape("专案结束"), nil)
	if r.status != 200 || r.json(t)["role"] != "unmask" {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	expectError(t, h.call(secAdmin, http.MethodDelete, "/api/v1/admin/users/zhang.new/roles/unmask?reason=x", nil), 404, "E131")
	expectError(t, h.call(secAdmin, http.MethodDelete, "/api/v1/admin/users/zhang.new/roles/officer", nil), 400, "E100", "reason")
	expectError(t, h.call(secAdmin, http.MethodDelete, "/api/v1/admin/users/ma.sysadmin/roles/sysadmin?reason=x", nil), 403, "E403", "命令行")
	expectError(t, h.call(newcomer, http.MethodGet, path+"?unmask=true&reason=x", nil), 403, "E403", "unmask")

	grants := h.waitAudits(api.ActionRoleGrant, 2)
	if grants[0].Actor != secAdmin.id || grants[0].Object != "user/zhang.new" || grants[0].Detail["role"] != "officer" || grants[0].Reason != "专案组（测试）" {
		t.Fatalf("role.grant audit: %+v", grants)
	}
	revokes := h.waitAudits(api.ActionRoleRevoke, 1)
	if revokes[0].Reason != "专案结束" || revokes[0].Detail["role"] != "unmask" {
		t.Fatalf("role.revoke audit: %+v", revokes)
	}
}

// TestAccountLocks: the system administrator locks an account (its
// requests are then 401, audited) and unlocks it, with reasons, audited.
func TestAccountLocks(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r := h.call(officer, http.MethodGet, "/api/v1/tasks", nil); r.status != 200 {
		t.Fatalf("before the lock: %d", r.status)
	}
	r := h.call(sysAdmin, http.MethodPut, "/api/v1/admin/users/li.officer/lock", map[string]any{"reason": "调离岗位"})
	if l := r.json(t); r.status != 201 || l["user"] != officer.id || l["lockedBy"] != sysAdmin.id {
		t.Fatalf("lock: %d %s", r.status, r.body)
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks", nil), 401, "E401", "账号已停用")
	fails := h.audits(auth.ActionFailure)
	if len(fails) != 1 || fails[0].Detail["claimedUser"] != officer.id || fails[0].Detail["lockReason"] != "调离岗位" {
		t.Fatalf("auth.failure of a locked account: %+v", fails)
	}
	expectError(t, h.call(sysAdmin, http.MethodPut, "/api/v1/admin/users/li.officer/lock", map[string]any{"reason": "x"}), 409, "E409", "已停用")
	expectError(t, h.call(sysAdmin, http.MethodPut, "/api/v1/admin/users/sys.admin/lock", map[string]any{"reason": "x"}), 403, "E403", "自己")
	r = h.call(sysAdmin, http.MethodGet, "/api/v1/admin/account-locks", nil)
	if ls := r.json(t)["locks"].([]any); len(ls) != 1 || ls[0].(map[string]any)["reason"] != "调离岗位" {
		t.Fatalf("locks: %s", r.body)
	}
	r = h.call(sysAdmin, http.MethodDelete, "/api/v1/admin/users/li.officer/lock?reason="+url.QueryEscape("返岗"), nil)
	if r.status != 200 {
		t.Fatalf("unlock: %d %s", r.status, r.body)
	}
	expectError(t, h.call(sysAdmin, http.MethodDelete, "/api/v1/admin/users/li.officer/lock?reason=x", nil), 404, "E131")
	if r := h.call(officer, http.MethodGet, "/api/v1/tasks", nil); r.status != 200 {
		t.Fatalf("after the unlock: %d", r.status)
	}
	if l := h.waitAudits(api.ActionAccountLock, 1); l[0].Reason != "调离岗位" || l[0].Object != "user/li.officer" || l[0].Actor != sysAdmin.id {
		t.Fatalf("account.lock audit: %+v", l)
	}
	if u := h.waitAudits(api.ActionAccountUnlock, 1); u[0].Reason != "返岗" || u[0].Detail["lockReason"] != "调离岗位" {
		t.Fatalf("account.unlock audit: %+v", u)
	}
}

// TestAuditRead: the auditor reads the chain, filtered and paged; the read
// is audited.
func TestAuditRead(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)))
	h.call(officer, http.MethodGet, "/api/v1/persons/"+personP, nil)
	h.call(officer, http.MethodGet, "/api/v1/persons/"+personP+"/controls", nil)
	r := h.call(auditor, http.MethodGet, "/api/v1/audit?action=person.*&limit=1", nil)
	page := r.json(t)
	es := page["entries"].([]any)
	if r.status != 200 || len(es) != 1 || es[0].(map[string]any)["action"] != api.ActionPersonRead || es[0].(map[string]any)["actor"] != officer.id || page["next"] == nil {
		t.Fatalf("audit page: %d %s", r.status, r.body)
	}
	r = h.call(auditor, http.MethodGet, "/api/v1/audit?action=person.*&after="+page["next"].(string), nil)
	if es := r.json(t)["entries"].([]any); len(es) != 1 || es[0].(map[string]any)["detail"].(map[string]any)["view"] != "controls" {
		t.Fatalf("second page: %s", r.body)
	}
	r = h.call(auditor, http.MethodGet, "/api/v1/audit?actor=nobody.at.all", nil)
	if es := r.json(t)["entries"].([]any); len(es) != 0 {
		t.Fatalf("unknown actor: %s", r.body)
	}
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit?after=-1", nil), 400, "E100", "after")
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit?limit=0", nil), 400, "E100", "limit")
	reads := h.audits(api.ActionAuditRead)
	if len(reads) != 3 || reads[0].Actor != auditor.id || reads[0].Detail["action"] != "person.*" || reads[0].Detail["count"] != float64(1) {
		t.Fatalf("audit.read entries: %+v", reads)
	}
	r = h.call(auditor, http.MethodGet, "/api/v1/me", nil)
	if me := r.json(t); fmt.Sprint(me["permissions"]) != "[audit.read log.operation.read log.system.read]" || me["unitName"] != "上海市公安局" {
		t.Fatalf("auditor's me: %s", r.body)
	}
}
