package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// yamlFor builds a YAML document from dotted keys.
func yamlFor(kv map[string]string) string {
	sections := map[string][]string{}
	var top []string
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := kv[k]
		if sec, leaf, ok := strings.Cut(k, "."); ok {
			sections[sec] = append(sections[sec], "  "+leaf+": "+quote(v))
			continue
		}
		top = append(top, k+": "+quote(v))
	}
	var b strings.Builder
	for _, l := range top {
		b.WriteString(l + "\n")
	}
	secs := make([]string, 0, len(sections))
	for s := range sections {
		secs = append(secs, s)
	}
	sort.Strings(secs)
	for _, s := range secs {
		b.WriteString(s + ":\n")
		for _, l := range sections[s] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func quote(v string) string {
	b, _ := json.Marshal(v) // a JSON string is a YAML double-quoted scalar
	return string(b)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tests := []struct {
		key  string
		got  any
		want any
	}{
		{"mode", c.Mode, ModeDevelopment},
		{"dev_identity", c.DevIdentity, true},
		{"database.url", c.Database.URL, "postgres://postgres@127.0.0.1:5432/zhianhub?sslmode=disable"},
		{"amqp.url", c.AMQP.URL, "amqp://guest:guest@127.0.0.1:5672/%2f"},
		{"keys.dir", c.Keys.Dir, "./var/keys"},
		{"keys.passphrase_file", c.Keys.PassphraseFile, ""},
		{"http.addr", c.HTTP.Addr, "127.0.0.1:8080"},
		{"categories", c.Categories, ""},
		{"log.level", c.Log.Level, "info"},
		{"log.system_level", c.Log.SystemLevel, "info"},
		{"log.retention", c.Log.Retention, 4320 * time.Hour},
		{"log.archive_dir", c.Log.ArchiveDir, "./var/archive/logs"},
		{"shutdown.timeout", c.Shutdown.Timeout, 30 * time.Second},
		{"audit.checkpoint_interval", c.Audit.CheckpointInterval, time.Minute},
		{"audit.retention", c.Audit.Retention, 26280 * time.Hour},
		{"audit.archive_dir", c.Audit.ArchiveDir, "./var/archive/audit"},
		{"audit.verify_interval", c.Audit.VerifyInterval, time.Hour},
		{"exchange.resend_initial", c.Exchange.ResendInitial, time.Minute},
		{"exchange.resend_max", c.Exchange.ResendMax, 30 * time.Minute},
		{"exchange.resend_giveup", c.Exchange.ResendGiveUp, 24 * time.Hour},
		{"exchange.gap_timeout", c.Exchange.GapTimeout, 10 * time.Minute},
		{"exchange.mps_exchange", c.Exchange.MPSExchange, "mps.bus"},
		{"city_bus.enabled", c.CityBus.Enabled, false},
		{"city_bus.exchange", c.CityBus.Exchange, "city.feedback"},
		{"city_bus.node", c.CityBus.Node, "310000000001"},
		{"security_platform.addr", c.SecPlatform.Addr, ""},
		{"security_platform.tls", c.SecPlatform.TLS, false},
		{"security_platform.ca_file", c.SecPlatform.CAFile, ""},
		{"ingress.enabled", c.Ingress.Enabled, true},
		{"http.tls_cert", c.HTTP.TLSCert, ""},
		{"http.tls_key", c.HTTP.TLSKey, ""},
		{"auth.units", c.Auth.Units, ""},
		{"auth.gateway_certs", c.Auth.GatewayCerts, []string(nil)},
		{"auth.gateway_fingerprints", c.Auth.GatewayFingerprints, []string(nil)},
		{"auth.gateway_client_ca", c.Auth.GatewayClientCA, ""},
		{"auth.oidc_issuer", c.Auth.OIDCIssuer, ""},
		{"auth.oidc_client_id", c.Auth.OIDCClientID, ""},
		{"auth.oidc_user_claim", c.Auth.OIDCUserClaim, "sub"},
		{"auth.oidc_unit_claim", c.Auth.OIDCUnitClaim, "unit"},
		{"auth.oidc_roles_claim", c.Auth.OIDCRolesClaim, "roles"},
	}
	if len(tests) != len(fields()) {
		t.Fatalf("test covers %d keys, config has %d", len(tests), len(fields()))
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.key, tt.got, tt.want)
		}
	}
	if c.File != "" {
		t.Errorf("File = %q, want none", c.File)
	}
	if got := c.AMQP.Vhost(); got != "/" {
		t.Errorf("vhost = %q, want /", got)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load with nothing = %+v, want Default() %+v", c, Default())
	}
}

// TestFileAndEnv sets each key in a file, then overrides it from the
// environment; an empty variable does not override.
func TestFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	pf1 := writeFile(t, dir, "pass1", "secret\n")
	pf2 := writeFile(t, dir, "pass2", "secret\n")
	cat1 := writeFile(t, dir, "cat1.tsv", "code\tname\tnote\n")
	cat2 := writeFile(t, dir, "cat2.tsv", "code\tname\tnote\n")
	af := newAuthFiles(t)
	gateway := func(without string) map[string]string {
		m := map[string]string{"auth.gateway_certs": af.gwCert, "auth.gateway_client_ca": af.ca, "http.tls_cert": af.tlsCert, "http.tls_key": af.tlsKey}
		delete(m, without)
		return m
	}
	fp := "sha256:" + strings.Repeat("ab", 32)

	tests := []struct {
		key      string
		extra    map[string]string // other file keys the value needs to be valid
		fileVal  string
		fileWant any
		envVal   string
		envWant  any
		get      func(Config) any
	}{
		{"mode", map[string]string{"dev_identity": "false", "keys.passphrase_file": pf1, "auth.units": af.units,
			"auth.oidc_issuer": "https://portal.example", "auth.oidc_client_id": "zhianhub"},
			"production", ModeProduction, "development", ModeDevelopment,
			func(c Config) any { return c.Mode }},
		{"dev_identity", nil, "false", false, "true", true,
			func(c Config) any { return c.DevIdentity }},
		{"ingress.enabled", nil, "false", false, "true", true,
			func(c Config) any { return c.Ingress.Enabled }},
		{"database.url", nil, "postgres://hub:pw@db.example:5432/hub?sslmode=require", "postgres://hub:pw@db.example:5432/hub?sslmode=require",
			"postgresql://x@127.0.0.1/other", "postgresql://x@127.0.0.1/other",
			func(c Config) any { return c.Database.URL }},
		{"amqp.url", nil, "amqp://u:p@mq.example:5672/hub", "amqp://u:p@mq.example:5672/hub",
			"amqps://u:p@mq2.example:5671/%2f", "amqps://u:p@mq2.example:5671/%2f",
			func(c Config) any { return c.AMQP.URL }},
		{"keys.dir", nil, "/etc/zhianhub/keys", "/etc/zhianhub/keys", "/tmp/keys", "/tmp/keys",
			func(c Config) any { return c.Keys.Dir }},
		{"keys.passphrase_file", nil, pf1, pf1, pf2, pf2,
			func(c Config) any { return c.Keys.PassphraseFile }},
		{"http.addr", nil, "10.0.0.5:8443", "10.0.0.5:8443", "127.0.0.1:0", "127.0.0.1:0",
			func(c Config) any { return c.HTTP.Addr }},
		{"categories", nil, cat1, cat1, cat2, cat2,
			func(c Config) any { return c.Categories }},
		{"log.level", nil, "debug", "debug", "WARN", "warn",
			func(c Config) any { return c.Log.Level }},
		{"log.system_level", nil, "warn", "warn", "Error", "error",
			func(c Config) any { return c.Log.SystemLevel }},
		{"log.retention", nil, "8760h", 8760 * time.Hour, "72h", 72 * time.Hour,
			func(c Config) any { return c.Log.Retention }},
		{"log.archive_dir", nil, "/var/lib/zhianhub/logs", "/var/lib/zhianhub/logs", "/tmp/logs", "/tmp/logs",
			func(c Config) any { return c.Log.ArchiveDir }},
		{"shutdown.timeout", nil, "45s", 45 * time.Second, "2m", 2 * time.Minute,
			func(c Config) any { return c.Shutdown.Timeout }},
		{"audit.checkpoint_interval", nil, "30s", 30 * time.Second, "1h", time.Hour,
			func(c Config) any { return c.Audit.CheckpointInterval }},
		{"audit.retention", nil, "17520h", 17520 * time.Hour, "48h", 48 * time.Hour,
			func(c Config) any { return c.Audit.Retention }},
		{"audit.archive_dir", nil, "/var/lib/zhianhub/archive", "/var/lib/zhianhub/archive", "/tmp/arch", "/tmp/arch",
			func(c Config) any { return c.Audit.ArchiveDir }},
		{"audit.verify_interval", nil, "30m", 30 * time.Minute, "6h", 6 * time.Hour,
			func(c Config) any { return c.Audit.VerifyInterval }},
		{"exchange.resend_initial", nil, "30s", 30 * time.Second, "100ms", 100 * time.Millisecond,
			func(c Config) any { return c.Exchange.ResendInitial }},
		{"exchange.resend_max", nil, "40m", 40 * time.Minute, "2h", 2 * time.Hour,
			func(c Config) any { return c.Exchange.ResendMax }},
		{"exchange.resend_giveup", nil, "48h", 48 * time.Hour, "5m", 5 * time.Minute,
			func(c Config) any { return c.Exchange.ResendGiveUp }},
		{"exchange.gap_timeout", nil, "5m", 5 * time.Minute, "1s", time.Second,
			func(c Config) any { return c.Exchange.GapTimeout }},
		{"exchange.mps_exchange", nil, "mps.bus.test", "mps.bus.test", "sim.bus", "sim.bus",
			func(c Config) any { return c.Exchange.MPSExchange }},
		{"city_bus.enabled", nil, "true", true, "false", false,
			func(c Config) any { return c.CityBus.Enabled }},
		{"city_bus.exchange", nil, "city.test", "city.test", "city.sim", "city.sim",
			func(c Config) any { return c.CityBus.Exchange }},
		{"city_bus.node", nil, "310000000002", "310000000002", "310000000003", "310000000003",
			func(c Config) any { return c.CityBus.Node }},
		{"security_platform.addr", nil, "soc.example:6514", "soc.example:6514", "127.0.0.1:1514", "127.0.0.1:1514",
			func(c Config) any { return c.SecPlatform.Addr }},
		{"security_platform.tls", nil, "true", true, "false", false,
			func(c Config) any { return c.SecPlatform.TLS }},
		{"security_platform.ca_file", map[string]string{"security_platform.tls": "true"}, pf1, pf1, pf2, pf2,
			func(c Config) any { return c.SecPlatform.CAFile }},
		{"http.tls_cert", map[string]string{"http.tls_key": af.tlsKey}, af.tlsCert, af.tlsCert, af.tlsCert, af.tlsCert,
			func(c Config) any { return c.HTTP.TLSCert }},
		{"http.tls_key", map[string]string{"http.tls_cert": af.tlsCert}, af.tlsKey, af.tlsKey, af.tlsKey, af.tlsKey,
			func(c Config) any { return c.HTTP.TLSKey }},
		{"auth.units", nil, af.units, af.units, af.units2, af.units2,
			func(c Config) any { return c.Auth.Units }},
		{"auth.gateway_certs", gateway("auth.gateway_certs"), af.gwCert, []string{af.gwCert}, af.gwCert + "," + af.gwCert2, []string{af.gwCert, af.gwCert2},
			func(c Config) any { return c.Auth.GatewayCerts }},
		{"auth.gateway_fingerprints", gateway("auth.gateway_certs"), fp, []string{fp}, " " + fp + " ,", []string{fp},
			func(c Config) any { return c.Auth.GatewayFingerprints }},
		{"auth.gateway_client_ca", gateway("auth.gateway_client_ca"), af.ca, af.ca, af.gwCert, af.gwCert,
			func(c Config) any { return c.Auth.GatewayClientCA }},
		{"auth.oidc_issuer", map[string]string{"auth.oidc_client_id": "zhianhub"}, "https://portal.example/oidc", "https://portal.example/oidc", "http://127.0.0.1:9000", "http://127.0.0.1:9000",
			func(c Config) any { return c.Auth.OIDCIssuer }},
		{"auth.oidc_client_id", map[string]string{"auth.oidc_issuer": "https://portal.example"}, "hub", "hub", "hub2", "hub2",
			func(c Config) any { return c.Auth.OIDCClientID }},
		{"auth.oidc_user_claim", nil, "police_no", "police_no", "preferred_username", "preferred_username",
			func(c Config) any { return c.Auth.OIDCUserClaim }},
		{"auth.oidc_unit_claim", nil, "org_code", "org_code", "unit", "unit",
			func(c Config) any { return c.Auth.OIDCUnitClaim }},
		{"auth.oidc_roles_claim", nil, "-", "-", "groups", "groups",
			func(c Config) any { return c.Auth.OIDCRolesClaim }},
	}
	if len(tests) != len(fields()) {
		t.Fatalf("test covers %d keys, config has %d", len(tests), len(fields()))
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			kv := map[string]string{tt.key: tt.fileVal}
			for k, v := range tt.extra {
				kv[k] = v
			}
			path := writeFile(t, t.TempDir(), "hub.yaml", yamlFor(kv))

			c, err := Load(path, nil)
			if err != nil {
				t.Fatalf("file: %v", err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.fileWant) {
				t.Errorf("file: %s = %v, want %v", tt.key, got, tt.fileWant)
			}
			if c.File != path {
				t.Errorf("File = %q, want %q", c.File, path)
			}

			// The file may also be named by ZHIANHUB_CONFIG; an empty
			// variable overrides nothing.
			c, err = Load("", env(map[string]string{EnvFile: path, envOf(tt.key): ""}))
			if err != nil {
				t.Fatalf("file via %s: %v", EnvFile, err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.fileWant) {
				t.Errorf("file via %s: %s = %v, want %v", EnvFile, tt.key, got, tt.fileWant)
			}

			c, err = Load(path, env(map[string]string{envOf(tt.key): tt.envVal}))
			if err != nil {
				t.Fatalf("env: %v", err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.envWant) {
				t.Errorf("env over file: %s = %v, want %v", tt.key, got, tt.envWant)
			}

			// And the variable alone, with no file.
			if tt.extra == nil {
				c, err = Load("", env(map[string]string{envOf(tt.key): tt.envVal}))
				if err != nil {
					t.Fatalf("env only: %v", err)
				}
				if got := tt.get(c); !reflect.DeepEqual(got, tt.envWant) {
					t.Errorf("env only: %s = %v, want %v", tt.key, got, tt.envWant)
				}
			}
		})
	}
}

func TestProductionDefaults(t *testing.T) {
	pf := writeFile(t, t.TempDir(), "pass", "secret\n")
	c, err := Load("", env(map[string]string{
		"ZHIANHUB_MODE":                 "production",
		"ZHIANHUB_KEYS_PASSPHRASE_FILE": pf,
		"ZHIANHUB_AUTH_UNITS":           newAuthFiles(t).units,
		"ZHIANHUB_AUTH_OIDC_ISSUER":     "https://portal.example",
		"ZHIANHUB_AUTH_OIDC_CLIENT_ID":  "zhianhub",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.DevIdentity {
		t.Error("dev_identity defaults to true in production")
	}
	if c.Ingress.Enabled {
		t.Error("ingress.enabled defaults to true in production")
	}
}

// TestInvalid: each invalid value is reported with its variable and key.
func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	af := newAuthFiles(t)
	pf := writeFile(t, dir, "pass", "secret\n")
	prod := map[string]string{"ZHIANHUB_MODE": "production", "ZHIANHUB_KEYS_PASSPHRASE_FILE": pf}
	with := func(base map[string]string, k, v string) map[string]string {
		m := map[string]string{k: v}
		for bk, bv := range base {
			if _, ok := m[bk]; !ok {
				m[bk] = bv
			}
		}
		return m
	}

	tests := []struct {
		name string
		key  string
		file map[string]string // file keys, or nil
		env  map[string]string
		want string // also in the message
		deny string // never in the message
	}{
		{"mode unknown", "mode", nil, map[string]string{"ZHIANHUB_MODE": "staging"}, `not "staging"`, ""},
		{"dev_identity not bool", "dev_identity", nil, map[string]string{"ZHIANHUB_DEV_IDENTITY": "maybe"}, "not a boolean", ""},
		{"dev_identity in production", "dev_identity", nil, with(prod, "ZHIANHUB_DEV_IDENTITY", "true"), "must be false in production", ""},
		{"database.url empty", "database.url", map[string]string{"database.url": ""}, nil, "must not be empty", ""},
		{"database.url scheme", "database.url", nil, map[string]string{"ZHIANHUB_DATABASE_URL": "mysql://h/db"}, "scheme", ""},
		{"database.url no database", "database.url", nil, map[string]string{"ZHIANHUB_DATABASE_URL": "postgres://u:hunter2@127.0.0.1:5432"}, "database name missing", "hunter2"},
		{"database.url no host", "database.url", nil, map[string]string{"ZHIANHUB_DATABASE_URL": "postgres:///db"}, "host missing", ""},
		{"database.url unparsable", "database.url", nil, map[string]string{"ZHIANHUB_DATABASE_URL": "postgres://u:hunter2@[::1/db"}, "not a URL", "hunter2"},
		{"amqp.url no vhost", "amqp.url", nil, map[string]string{"ZHIANHUB_AMQP_URL": "amqp://guest:hunter2@127.0.0.1:5672"}, "vhost missing", "hunter2"},
		{"amqp.url slash only", "amqp.url", map[string]string{"amqp.url": "amqp://127.0.0.1:5672/"}, nil, "vhost missing", ""},
		{"amqp.url two segments", "amqp.url", nil, map[string]string{"ZHIANHUB_AMQP_URL": "amqp://127.0.0.1/a/b"}, "one path segment", ""},
		{"amqp.url scheme", "amqp.url", nil, map[string]string{"ZHIANHUB_AMQP_URL": "http://127.0.0.1/%2f"}, "scheme", ""},
		{"amqp.url no host", "amqp.url", nil, map[string]string{"ZHIANHUB_AMQP_URL": "amqp:///%2f"}, "host missing", ""},
		{"keys.dir empty", "keys.dir", map[string]string{"keys.dir": ""}, nil, "must not be empty", ""},
		{"keys.passphrase_file missing", "keys.passphrase_file", nil, map[string]string{"ZHIANHUB_KEYS_PASSPHRASE_FILE": filepath.Join(dir, "nope")}, "no such file", ""},
		{"keys.passphrase_file production", "keys.passphrase_file", nil, map[string]string{"ZHIANHUB_MODE": "production", "ZHIANHUB_DEV_IDENTITY": "false"}, "required in production", ""},
		{"http.addr no port", "http.addr", nil, map[string]string{"ZHIANHUB_HTTP_ADDR": "8080"}, "not host:port", ""},
		{"http.addr bad port", "http.addr", nil, map[string]string{"ZHIANHUB_HTTP_ADDR": "127.0.0.1:99999"}, "port", ""},
		{"http.addr production all interfaces", "http.addr", nil, with(prod, "ZHIANHUB_HTTP_ADDR", "0.0.0.0:8080"), "all interfaces", ""},
		{"http.addr production no host", "http.addr", nil, with(prod, "ZHIANHUB_HTTP_ADDR", ":8080"), "all interfaces", ""},
		{"http.addr production port 0", "http.addr", nil, with(prod, "ZHIANHUB_HTTP_ADDR", "10.1.2.3:0"), "fixed port", ""},
		{"categories missing", "categories", nil, map[string]string{"ZHIANHUB_CATEGORIES": filepath.Join(dir, "none.tsv")}, "no such file", ""},
		{"categories directory", "categories", map[string]string{"categories": dir}, nil, "not a regular file", ""},
		{"log.level", "log.level", nil, map[string]string{"ZHIANHUB_LOG_LEVEL": "verbose"}, "debug, info, warn or error", ""},
		{"log.system_level", "log.system_level", map[string]string{"log.system_level": "trace"}, nil, "debug, info, warn or error", ""},
		{"log.retention", "log.retention", nil, map[string]string{"ZHIANHUB_LOG_RETENTION": "2h"}, "at least 24h", ""},
		{"log.archive_dir", "log.archive_dir", map[string]string{"log.archive_dir": " "}, nil, "must not be empty", ""},
		{"shutdown.timeout no unit", "shutdown.timeout", map[string]string{"shutdown.timeout": "30"}, nil, "not a duration", ""},
		{"shutdown.timeout negative", "shutdown.timeout", nil, map[string]string{"ZHIANHUB_SHUTDOWN_TIMEOUT": "-1s"}, "must be positive", ""},
		{"audit.checkpoint_interval", "audit.checkpoint_interval", nil, map[string]string{"ZHIANHUB_AUDIT_CHECKPOINT_INTERVAL": "soon"}, "not a duration", ""},
		{"audit.checkpoint_interval zero", "audit.checkpoint_interval", nil, map[string]string{"ZHIANHUB_AUDIT_CHECKPOINT_INTERVAL": "0s"}, "must be positive", ""},
		{"audit.retention", "audit.retention", nil, map[string]string{"ZHIANHUB_AUDIT_RETENTION": "1h"}, "at least 24h", ""},
		{"audit.archive_dir", "audit.archive_dir", map[string]string{"audit.archive_dir": " "}, nil, "must not be empty", ""},
		{"audit.verify_interval", "audit.verify_interval", nil, map[string]string{"ZHIANHUB_AUDIT_VERIFY_INTERVAL": "500ms"}, "at least 1s", ""},
		{"exchange.resend_initial", "exchange.resend_initial", nil, map[string]string{"ZHIANHUB_RESEND_INITIAL": "-1s"}, "must be positive", ""},
		{"exchange.resend_max below initial", "exchange.resend_max", nil, map[string]string{"ZHIANHUB_RESEND_MAX": "10s"}, "shorter than exchange.resend_initial", ""},
		{"exchange.resend_giveup below initial", "exchange.resend_giveup", nil, map[string]string{"ZHIANHUB_RESEND_GIVEUP": "1s"}, "shorter than exchange.resend_initial", ""},
		{"exchange.gap_timeout", "exchange.gap_timeout", nil, map[string]string{"ZHIANHUB_GAP_TIMEOUT": "ten minutes"}, "not a duration", ""},
		{"exchange.mps_exchange", "exchange.mps_exchange", nil, map[string]string{"ZHIANHUB_MPS_EXCHANGE": "a b"}, "must be an exchange name", ""},
		{"city_bus.exchange", "city_bus.exchange", nil, map[string]string{"ZHIANHUB_CITY_EXCHANGE": "a#b"}, "must be an exchange name", ""},
		{"city_bus.exchange same as mps", "city_bus.exchange", nil, map[string]string{"ZHIANHUB_CITY_EXCHANGE": "mps.bus"}, "must differ", ""},
		{"city_bus.node", "city_bus.node", nil, map[string]string{"ZHIANHUB_CITY_NODE": "31000000001"}, "12-digit", ""},
		{"city_bus.enabled not bool", "city_bus.enabled", nil, map[string]string{"ZHIANHUB_CITY_BUS_ENABLED": "maybe"}, "not a boolean", ""},
		{"security_platform.addr", "security_platform.addr", nil, map[string]string{"ZHIANHUB_SECPLATFORM_ADDR": "soc.example"}, "must be host:port", ""},
		{"security_platform.tls", "security_platform.tls", nil, map[string]string{"ZHIANHUB_SECPLATFORM_TLS": "yes please"}, "not a boolean", ""},
		{"ingress.enabled not bool", "ingress.enabled", nil, map[string]string{"ZHIANHUB_INGRESS_ENABLED": "sometimes"}, "not a boolean", ""},
		{"security_platform.ca_file without tls", "security_platform.ca_file", nil, map[string]string{"ZHIANHUB_SECPLATFORM_CA_FILE": dir}, "security_platform.tls is false", ""},
		{"security_platform.ca_file missing", "security_platform.ca_file", nil, map[string]string{"ZHIANHUB_SECPLATFORM_TLS": "true", "ZHIANHUB_SECPLATFORM_CA_FILE": filepath.Join(dir, "nope.pem")}, "no such file", ""},
		{"http.tls_cert not a certificate", "http.tls_cert", nil, map[string]string{"ZHIANHUB_HTTP_TLS_CERT": af.notPEM, "ZHIANHUB_HTTP_TLS_KEY": af.tlsKey}, "do not load", ""},
		{"http.tls_key of another certificate", "http.tls_cert", nil, map[string]string{"ZHIANHUB_HTTP_TLS_CERT": af.tlsCert, "ZHIANHUB_HTTP_TLS_KEY": af.tlsKey2}, "do not load", ""},
		{"http.tls_key alone", "http.tls_cert", nil, map[string]string{"ZHIANHUB_HTTP_TLS_KEY": af.tlsKey}, "required with http.tls_key", ""},
		{"http.tls_cert alone", "http.tls_key", nil, map[string]string{"ZHIANHUB_HTTP_TLS_CERT": af.tlsCert}, "required with http.tls_cert", ""},
		{"auth.units missing", "auth.units", nil, map[string]string{"ZHIANHUB_AUTH_UNITS": filepath.Join(dir, "none.yaml")}, "no such file", ""},
		{"auth.units invalid", "auth.units", nil, map[string]string{"ZHIANHUB_AUTH_UNITS": af.notPEM}, "unit tree", ""},
		{"auth.gateway_certs not PEM", "auth.gateway_certs", nil, map[string]string{"ZHIANHUB_AUTH_GATEWAY_CERTS": af.notPEM}, "no PEM certificate", ""},
		{"auth.gateway_fingerprints", "auth.gateway_fingerprints", nil, map[string]string{"ZHIANHUB_AUTH_GATEWAY_FINGERPRINTS": "md5:00"}, "want sha256", ""},
		{"auth.gateway_client_ca not PEM", "auth.gateway_client_ca", nil, map[string]string{"ZHIANHUB_AUTH_GATEWAY_CLIENT_CA": af.notPEM}, "no PEM certificate", ""},
		{"auth.oidc_issuer", "auth.oidc_issuer", nil, map[string]string{"ZHIANHUB_AUTH_OIDC_ISSUER": "portal", "ZHIANHUB_AUTH_OIDC_CLIENT_ID": "x"}, "http(s) URL", ""},
		{"auth.oidc_client_id", "auth.oidc_client_id", nil, map[string]string{"ZHIANHUB_AUTH_OIDC_CLIENT_ID": "x"}, "without auth.oidc_issuer", ""},
		{"auth.oidc_user_claim", "auth.oidc_user_claim", map[string]string{"auth.oidc_user_claim": ""}, nil, "claim name", ""},
		{"auth.oidc_unit_claim", "auth.oidc_unit_claim", nil, map[string]string{"ZHIANHUB_AUTH_OIDC_UNIT_CLAIM": "org code"}, "claim name", ""},
		{"auth.oidc_roles_claim", "auth.oidc_roles_claim", nil, map[string]string{"ZHIANHUB_AUTH_OIDC_ROLES_CLAIM": "角色"}, "claim name", ""},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.key] = true
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != nil {
				path = writeFile(t, t.TempDir(), "hub.yaml", yamlFor(tt.file))
			}
			_, err := Load(path, env(tt.env))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			want := "config: " + envOf(tt.key) + " (" + tt.key + "): "
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not name the key as %q", msg, want)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if tt.deny != "" && strings.Contains(msg, tt.deny) {
				t.Errorf("error %q shows %q", msg, tt.deny)
			}
		})
	}
	for _, f := range fields() {
		if !covered[f.key] {
			t.Errorf("no invalid case for %s", f.key)
		}
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.Log.Level = "loud"
	c.Shutdown.Timeout = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, k := range []string{"ZHIANHUB_LOG_LEVEL (log.level)", "ZHIANHUB_SHUTDOWN_TIMEOUT (shutdown.timeout)"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q misses %s", err, k)
		}
	}
}

// TestFileErrors: unknown keys, wrong shapes and broken files are named.
func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
		deny string
	}{
		{"unknown top key", "modee: production\n", "unknown key modee", ""},
		{"unknown nested key", "amqp:\n  ulr: amqp://h/%2f\n", "unknown key amqp.ulr", ""},
		{"unknown section", "redis:\n  url: x\n", "unknown key redis", ""},
		{"section as scalar", "database: postgres://u:hunter2@h/db\n", "database must be a mapping", "hunter2"},
		{"leaf as list", "mode: [a, b]\n", "mode (ZHIANHUB_MODE) must be a single value", ""},
		{"leaf as mapping", "http:\n  addr:\n    host: x\n", "http.addr (ZHIANHUB_HTTP_ADDR) must be a single value", ""},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "key log.level appears twice", ""},
		{"two documents", "mode: development\n---\nmode: production\n", "more than one YAML document", ""},
		{"not a mapping", "- a\n- b\n", "must be a mapping", ""},
		{"broken yaml", "mode: [\n", "yaml:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "hub.yaml", tt.yaml)
			_, err := Load(path, nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, path) {
				t.Errorf("error %q does not name %q in %s", msg, tt.want, path)
			}
			if tt.deny != "" && strings.Contains(msg, tt.deny) {
				t.Errorf("error %q shows %q", msg, tt.deny)
			}
		})
	}
}

func TestFileEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"", "# only a comment\n", "log:\n"} {
		c, err := Load(writeFile(t, dir, "empty.yaml", content), nil)
		if err != nil {
			t.Errorf("file %q: %v", content, err)
			continue
		}
		if c.Log.Level != DefaultLogLevel {
			t.Errorf("file %q: log.level = %q", content, c.Log.Level)
		}
	}
	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load("", env(map[string]string{EnvFile: missing}))
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), EnvFile) {
		t.Errorf("missing file: error %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Database.URL = "postgres://hub:dbsecret@db:5432/hub"
	c.AMQP.URL = "amqp://hub:mqsecret@mq:5672/hub"
	for name, s := range map[string]string{"Redacted": c.Redacted(), "LogValue": c.LogValue().String()} {
		for _, secret := range []string{"dbsecret", "mqsecret"} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows %s: %s", name, secret, s)
			}
		}
		for _, want := range []string{"hub:xxxxx@db:5432/hub", "amqp.url", "shutdown.timeout", "30s"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s misses %q: %s", name, want, s)
			}
		}
	}
	var buf bytes.Buffer
	NewLogger(&buf, "info").Info("config", "config", c)
	if strings.Contains(buf.String(), "secret") || !strings.Contains(buf.String(), `"database.url":"postgres://hub:xxxxx@db:5432/hub"`) {
		t.Errorf("logged config: %s", buf.String())
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level string
		logs  []slog.Level // levels that must appear
		drops []slog.Level
	}{
		{"debug", []slog.Level{slog.LevelDebug, slog.LevelError}, nil},
		{"info", []slog.Level{slog.LevelInfo}, []slog.Level{slog.LevelDebug}},
		{"WARN", []slog.Level{slog.LevelWarn}, []slog.Level{slog.LevelInfo}},
		{"error", []slog.Level{slog.LevelError}, []slog.Level{slog.LevelWarn}},
		{"bogus", []slog.Level{slog.LevelInfo}, []slog.Level{slog.LevelDebug}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			for _, l := range tt.logs {
				var buf bytes.Buffer
				NewLogger(&buf, tt.level).Log(t.Context(), l, "hello", "k", "v")
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
					t.Fatalf("level %s: not one JSON line: %q", l, buf.String())
				}
				if m["msg"] != "hello" || m["k"] != "v" || m["level"] != l.String() {
					t.Errorf("level %s: %v", l, m)
				}
			}
			for _, l := range tt.drops {
				var buf bytes.Buffer
				NewLogger(&buf, tt.level).Log(t.Context(), l, "hello")
				if buf.Len() != 0 {
					t.Errorf("level %s logged at %s: %s", l, tt.level, buf.String())
				}
			}
		})
	}
}

// TestREADMEListsEveryKey keeps the configuration table of README.md honest.
func TestREADMEListsEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "README.md"))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, f := range append(fields(), field{key: "(file)", env: EnvFile}) {
		if !bytes.Contains(b, []byte("`"+f.env+"`")) {
			t.Errorf("README.md does not document %s (%s)", f.env, f.key)
		}
	}
}
