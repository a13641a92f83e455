package oidctest_test

import (
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/auth/oidctest"
)

// TestProviderWithBearer: the hub's bearer authenticator (go-oidc)
// discovers the provider over HTTP and accepts its tokens, RS256 and
// ES256; a token for another audience is refused; the key set is fetched
// once for many tokens.
func TestProviderWithBearer(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		t.Run(string(alg), func(t *testing.T) {
			p, err := oidctest.Start(oidctest.Config{Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			b, err := auth.NewBearer(auth.BearerConfig{Issuer: p.Issuer, ClientID: "zhianhub"})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Discover(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, user := range []string{"1000001", "1000002", "1000003"} {
				tok, err := p.Token(oidctest.Claims{Audience: "zhianhub", Subject: user, Unit: "310104000000", Roles: []string{"officer"}})
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest("GET", "/api/v1/me", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				id, err := b.Authenticate(r)
				if err != nil || id.User != user || id.Unit != "310104000000" || id.RoleList() != "officer" {
					t.Fatalf("token of %s: %+v %v", user, id, err)
				}
			}
			tok, err := p.Token(oidctest.Claims{Audience: "another-app", Subject: "1000001"})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/api/v1/me", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			if _, err := b.Authenticate(r); err == nil {
				t.Fatal("a token for another audience was accepted")
			}
			if n := p.JWKSFetches(); n != 1 {
				t.Fatalf("JWKS fetched %d times, want 1 (cached)", n)
			}
		})
	}
	if _, err := oidctest.Start(oidctest.Config{Algorithm: jose.HS256}); err == nil {
		t.Fatal("HS256 accepted")
	}
}
