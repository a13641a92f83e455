package api_test

import (
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/api"
	"zhianhub/crypto"
	"zhianhub/crypto/fieldenc"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

func TestConfigValidate(t *testing.T) {
	full := func() api.Config {
		return api.Config{Pool: new(pgxpool.Pool), Registry: new(registry.Registry), Filing: new(routes.Filing),
			Audit: new(audit.Writer), Journal: journal.New(nil), AuditKeys: func(crypto.KeyID) (crypto.Verifier, bool) { return nil, false },
			Keyring: new(fieldenc.Keyring)}
	}
	for _, tc := range []struct {
		name   string
		edit   func(*api.Config)
		errHas string
	}{
		{"complete", func(*api.Config) {}, ""},
		{"no pool", func(c *api.Config) { c.Pool = nil }, "Pool is required"},
		{"no registry", func(c *api.Config) { c.Registry = nil }, "Registry is required"},
		{"no filing", func(c *api.Config) { c.Filing = nil }, "Filing is required"},
		{"no audit", func(c *api.Config) { c.Audit = nil }, "Audit is required"},
		{"no journal", func(c *api.Config) { c.Journal = nil }, "Journal is required"},
		{"no audit keys", func(c *api.Config) { c.AuditKeys = nil }, "AuditKeys is required"},
		{"no keyring for the leads", func(c *api.Config) { c.Keyring = nil }, "Leads (or Keyring) is required"},
		{"export rows negative", func(c *api.Config) { c.MaxExportRows = -1 }, "MaxExportRows"},
		{"export rows past a worksheet", func(c *api.Config) { c.MaxExportRows = 1 << 20 }, "MaxExportRows"},
		{"export rows set", func(c *api.Config) { c.MaxExportRows = 10 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := full()
			tc.edit(&c)
			err := api.Mount(chi.NewRouter(), c)
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want %q", err, tc.errHas)
			}
		})
	}
}
