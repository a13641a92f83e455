package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"zhianhub/adapters/auth"
)

// provider is a small but real OpenID Connect provider: discovery
// document, JWKS of RS256 keys, and JWTs signed with go-jose. The hub's
// verifier (go-oidc) fetches both over HTTP like from the unified portal.
type provider struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // published, by kid
	jwks int                        // JWKS fetches
}

func newProvider(t *testing.T) *provider {
	t.Helper()
	p := &provider{t: t, keys: map[string]*rsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys",
			"authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.jwks++
		var set jose.JSONWebKeySet
		for kid, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	return k
}

// publish adds a key to the JWKS.
func (p *provider) publish(kid string, k *rsa.PrivateKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = k
}

// sign returns a JWT of claims signed with k under kid.
func (p *provider) sign(kid string, k *rsa.PrivateKey, claims map[string]any) string {
	p.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	must(p.t, err)
	payload, err := json.Marshal(claims)
	must(p.t, err)
	jws, err := s.Sign(payload)
	must(p.t, err)
	tok, err := jws.CompactSerialize()
	must(p.t, err)
	return tok
}

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// TestBearer verifies tokens of a real in-process provider with go-oidc:
// a valid token gives the identity (the administrators' roles are not
// taken from it); a wrong audience or issuer, an expired token, a bad
// signature and an unknown key id are refused; a key published later is
// found by refetching the JWKS.
func TestBearer(t *testing.T) {
	p := newProvider(t)
	k1, k2, rogue := newRSAKey(t), newRSAKey(t), newRSAKey(t)
	p.publish("k1", k1)
	const client = "zhianhub"
	b, err := auth.NewBearer(auth.BearerConfig{Issuer: p.srv.URL, ClientID: client, UserClaim: "police_no", UnitClaim: "org_code"})
	must(t, err)
	must(t, b.Discover(t.Context()))

	now := time.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": p.srv.URL, "aud": client, "sub": "portal-uid-77", "police_no": "1023456",
			"org_code": "310104000000", "roles": []string{"officer", "unmask", auth.RoleSecAdmin},
			"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}

	id, err := b.Authenticate(bearerRequest(p.sign("k1", k1, claims(nil))))
	if err != nil || id.User != "1023456" || id.Unit != "310104000000" || id.RoleList() != "officer,unmask" || id.Method != auth.MethodBearer {
		t.Fatalf("valid token: %+v %v", id, err)
	}
	id, err = b.Authenticate(bearerRequest(p.sign("k1", k1, claims(func(c map[string]any) {
		c["aud"] = []string{"other", client}
		c["roles"] = "officer, unmask"
		delete(c, "org_code")
	}))))
	if err != nil || id.Unit != "" || id.RoleList() != "officer,unmask" {
		t.Fatalf("audience list, roles string, no unit: %+v %v", id, err)
	}

	for _, tc := range []struct {
		name  string
		token string
		msg   string
	}{
		{"wrong audience", p.sign("k1", k1, claims(func(c map[string]any) { c["aud"] = "another-app" })), "令牌无效"},
		{"wrong issuer", p.sign("k1", k1, claims(func(c map[string]any) { c["iss"] = "https://portal.invalid" })), "令牌无效"},
		{"expired", p.sign("k1", k1, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), "令牌已过期"},
		{"bad signature", p.sign("k1", rogue, claims(nil)), "令牌无效"},
		{"unknown kid", p.sign("k9", rogue, claims(nil)), "令牌无效"},
		{"tampered payload", tamper(p.sign("k1", k1, claims(nil))), "令牌无效"},
		{"not a JWT", "abc.def", "令牌无效"},
		{"no user claim", p.sign("k1", k1, claims(func(c map[string]any) { delete(c, "police_no") })), "police_no"},
		{"bad user claim", p.sign("k1", k1, claims(func(c map[string]any) { c["police_no"] = "李 1023456" })), "police_no"},
		{"bad unit claim", p.sign("k1", k1, claims(func(c map[string]any) { c["org_code"] = "3101" })), "org_code"},
		{"bad roles claim", p.sign("k1", k1, claims(func(c map[string]any) { c["roles"] = []string{"Officer"} })), "角色"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Authenticate(bearerRequest(tc.token))
			var ae *auth.AuthError
			if !errors.As(err, &ae) || ae.Absent || !strings.Contains(ae.Message, tc.msg) {
				t.Fatalf("error %v, want a refusal with %q", err, tc.msg)
			}
		})
	}

	// Key rotation: a token signed with a key published after discovery.
	p.publish("k2", k2)
	if id, err := b.Authenticate(bearerRequest(p.sign("k2", k2, claims(nil)))); err != nil || id.User != "1023456" {
		t.Fatalf("rotated key: %+v %v", id, err)
	}

	// No bearer token: no credentials of this kind.
	for _, h := range []string{"", "Basic bGk6eA=="} {
		r := bearerRequest("")
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		var ae *auth.AuthError
		if _, err := b.Authenticate(r); !errors.As(err, &ae) || !ae.Absent {
			t.Errorf("Authorization %q: %v, want absent", h, err)
		}
	}
}

// tamper changes the payload of a JWT without re-signing it.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = parts[1][:len(parts[1])-2] + "AA"
	return strings.Join(parts, ".")
}

// TestBearerDiscoveryDown: the hub starts while the portal is down;
// requests are refused until discovery succeeds.
func TestBearerDiscoveryDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	b, err := auth.NewBearer(auth.BearerConfig{Issuer: down.URL, ClientID: "zhianhub", DiscoveryRetry: time.Nanosecond})
	must(t, err)
	down.Close()
	if err := b.Discover(t.Context()); err == nil {
		t.Fatal("discovery of a closed server succeeded")
	}
	var ae *auth.AuthError
	if _, err := b.Authenticate(bearerRequest("x.y.z")); !errors.As(err, &ae) || !strings.Contains(ae.Message, "暂不可用") {
		t.Fatalf("refusal while down: %v", err)
	}
	for _, c := range []auth.BearerConfig{{ClientID: "x"}, {Issuer: "ftp://portal", ClientID: "x"}, {Issuer: "https://portal.invalid"}} {
		if _, err := auth.NewBearer(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}
