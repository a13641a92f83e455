// Package config loads the hub's configuration: an optional YAML file, then
// ZHIANHUB_* environment overrides, then validation. Every error names the
// offending key both as its environment variable and as its YAML path, e.g.
//
//	config: ZHIANHUB_AMQP_URL (amqp.url): vhost missing
//
// No file is needed: with no file and no environment the defaults describe a
// development hub on one machine (PostgreSQL and RabbitMQ on 127.0.0.1).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvFile is the environment variable that may name the configuration file.
const EnvFile = "ZHIANHUB_CONFIG"

// Mode selects how strict validation is.
type Mode string

// Modes.
const (
	ModeDevelopment Mode = "development"
	ModeProduction  Mode = "production"
)

// Defaults.
const (
	DefaultDatabaseURL        = "postgres://postgres@127.0.0.1:5432/zhianhub?sslmode=disable"
	DefaultAMQPURL            = "amqp://guest:guest@127.0.0.1:5672/%2f"
	DefaultKeysDir            = "./var/keys"
	DefaultHTTPAddr           = "127.0.0.1:8080"
	DefaultLogLevel           = "info"
	DefaultShutdownTimeout    = 30 * time.Second
	DefaultCheckpointInterval = time.Minute
	// DefaultAuditRetention keeps audit entries three years (等保 and the
	// seed's requirement) before they are archived and deleted.
	DefaultAuditRetention  = 3 * 365 * 24 * time.Hour
	DefaultAuditArchiveDir = "./var/archive/audit"
	// DefaultLogRetention keeps the system and operation logs 180 days
	// before they are archived and deleted.
	DefaultLogRetention  = 180 * 24 * time.Hour
	DefaultLogArchiveDir = "./var/archive/logs"
	// DefaultAuditVerifyInterval is how often the hub verifies its audit
	// chain (a broken chain is a security event).
	DefaultAuditVerifyInterval = time.Hour
	DefaultResendInitial       = time.Minute
	DefaultResendMax           = 30 * time.Minute
	DefaultResendGiveUp        = 24 * time.Hour
	DefaultGapTimeout          = 10 * time.Minute
	DefaultMPSExchange         = "mps.bus"
	DefaultCityExchange        = "city.feedback"
	DefaultCityNode            = "310000000001"
	DefaultOIDCUserClaim       = "sub"
	DefaultOIDCUnitClaim       = "unit"
	DefaultOIDCRolesClaim      = "roles"
)

// Config is the whole configuration of the hub.
type Config struct {
	// File is the path of the file that was read, "" when none.
	File string
	// Mode is development or production.
	Mode Mode
	// DevIdentity lets the hub run with the demo node identity and demo keys.
	// Defaults to true in development; must be false in production.
	DevIdentity bool
	Database    DatabaseConfig
	AMQP        AMQPConfig
	Keys        KeysConfig
	HTTP        HTTPConfig
	// Categories is the path of the key-person category table (TSV);
	// "" selects the embedded demo table.
	Categories string
	Log        LogConfig
	Shutdown   ShutdownConfig
	Audit      AuditConfig
	Exchange   ExchangeConfig
	Auth       AuthConfig
	// SecPlatform is where security events go (统一安全防护平台).
	SecPlatform SecPlatformConfig
	// Ingress is the internal modules' event ingress (zhian.ingress).
	Ingress IngressConfig
	// CityBus is the city bureau's feedback bus (feedback-bus.md).
	CityBus CityBusConfig
}

// CityBusConfig is the city bureau's feedback bus (市局反馈总线): dispatch
// orders come down on it, feedback goes up. It shares the exchange
// settings (resend, gap timeout) of the Ministry bus.
type CityBusConfig struct {
	// Enabled runs the city bus routes (a second inbound route on the
	// hub's city queue and the feedback filing; the relay is shared).
	// Default false: the bus must exist (the city bureau's, or
	// `zhianhub sim city`) and keys.dir must hold peers/<node>/.
	Enabled bool
	// Exchange is the city bus exchange; the hub's queue name derives from
	// it (citybus.NodeQueue).
	Exchange string
	// Node is the city bureau's node code (12 digits).
	Node string
}

// IngressConfig switches the ingress route of the internal modules' events
// (zhian.ingress → contract check → zhian.events).
type IngressConfig struct {
	// Enabled runs the route. Defaults to true in development and false
	// in production (enable it once the modules' RabbitMQ users are set
	// up, zhianhub modules apply).
	Enabled bool
}

// SecPlatformConfig locates the security-protection platform's syslog
// receiver (RFC 5424 over TCP, CEF payloads).
type SecPlatformConfig struct {
	// Addr is host:port; "" sends no events (they stay in the audit chain).
	Addr string
	// TLS wraps the connection; CAFile holds the roots that verify the
	// platform ("" = the system roots).
	TLS    bool
	CAFile string
}

// DatabaseConfig locates PostgreSQL.
type DatabaseConfig struct {
	// URL is a postgres:// URL naming the database.
	URL string
}

// AMQPConfig locates RabbitMQ.
type AMQPConfig struct {
	// URL is an amqp:// or amqps:// URL whose path is the (escaped) vhost,
	// e.g. /%2f for the default vhost "/".
	URL string
}

// Vhost returns the vhost named by URL ("" when the URL is invalid).
func (c AMQPConfig) Vhost() string {
	v, _ := amqpVhost(c.URL)
	return v
}

// KeysConfig locates the key directory (envelope.md layout).
type KeysConfig struct {
	Dir string
	// PassphraseFile holds the passphrase of the encrypted private keys;
	// required in production.
	PassphraseFile string
}

// HTTPConfig configures the operations and API listener.
type HTTPConfig struct {
	Addr string
	// TLSCert and TLSKey are PEM files of the listener's certificate and
	// key: set both to serve HTTPS (required for the security gateway,
	// which connects with its client certificate).
	TLSCert string
	TLSKey  string
}

// AuthConfig configures authentication and the data scope of the API.
type AuthConfig struct {
	// Units is the unit tree file (deploy/units.example.yaml); "" selects
	// the example tree (development only).
	Units string
	// GatewayCerts are PEM files of the security gateways' TLS client
	// certificates; GatewayFingerprints name them by hash (sha256:<hex> or
	// sm3:<hex>). Either turns the gateway authenticator on.
	GatewayCerts        []string
	GatewayFingerprints []string
	// GatewayClientCA is the PEM file of the CAs that verify the gateways'
	// client certificates in the TLS handshake.
	GatewayClientCA string
	// OIDCIssuer and OIDCClientID turn the bearer-token authenticator of
	// the unified portal on.
	OIDCIssuer   string
	OIDCClientID string
	// Claim names of the user id, unit and roles in the portal's tokens
	// ("-" roles claim: no roles from tokens).
	OIDCUserClaim  string
	OIDCUnitClaim  string
	OIDCRolesClaim string
}

// Gateway reports whether the gateway authenticator is configured.
func (a AuthConfig) Gateway() bool { return len(a.GatewayCerts) > 0 || len(a.GatewayFingerprints) > 0 }

// OIDC reports whether the bearer-token authenticator is configured.
func (a AuthConfig) OIDC() bool { return a.OIDCIssuer != "" }

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string
	// SystemLevel is the least level kept in the system log (the
	// database, queryable through the API): debug, info, warn or error.
	SystemLevel string
	// Retention is how long system and operation log records stay in the
	// database; older ones are archived to ArchiveDir (signed manifest),
	// then deleted.
	Retention  time.Duration
	ArchiveDir string
}

// ShutdownConfig bounds graceful shutdown.
type ShutdownConfig struct {
	Timeout time.Duration
}

// AuditConfig configures the audit chain.
type AuditConfig struct {
	// CheckpointInterval is how often a signed checkpoint of the chain is written.
	CheckpointInterval time.Duration
	// Retention is how long entries stay in the database; older ones are
	// archived to ArchiveDir (signed manifest), then deleted.
	Retention  time.Duration
	ArchiveDir string
	// VerifyInterval is how often the hub verifies the chain; a break is
	// audited as security.chain_break (and so forwarded).
	VerifyInterval time.Duration
}

// ExchangeConfig times the bus exchange (mps-bus.md, "Delivery rules"). The
// spec's times are the defaults; operators and test harnesses may shorten
// them.
type ExchangeConfig struct {
	// ResendInitial is the wait for a receipt before the first resend.
	ResendInitial time.Duration
	// ResendMax caps the doubling wait between resends.
	ResendMax time.Duration
	// ResendGiveUp is how long a filing is resent before it is flagged.
	ResendGiveUp time.Duration
	// GapTimeout is how long messages held for a sequence gap wait (E140).
	GapTimeout time.Duration
	// MPSExchange is the Ministry bus exchange; the hub's queue name derives
	// from it (mpsbus.NodeQueue), so a test or a second bus on one vhost
	// uses its own names.
	MPSExchange string
}

// Default returns the development defaults.
func Default() Config {
	return Config{
		Mode:        ModeDevelopment,
		DevIdentity: true,
		Database:    DatabaseConfig{URL: DefaultDatabaseURL},
		AMQP:        AMQPConfig{URL: DefaultAMQPURL},
		Keys:        KeysConfig{Dir: DefaultKeysDir},
		HTTP:        HTTPConfig{Addr: DefaultHTTPAddr},
		Log:         LogConfig{Level: DefaultLogLevel, SystemLevel: DefaultLogLevel, Retention: DefaultLogRetention, ArchiveDir: DefaultLogArchiveDir},
		Shutdown:    ShutdownConfig{Timeout: DefaultShutdownTimeout},
		Audit:       AuditConfig{CheckpointInterval: DefaultCheckpointInterval, Retention: DefaultAuditRetention, ArchiveDir: DefaultAuditArchiveDir, VerifyInterval: DefaultAuditVerifyInterval},
		Exchange: ExchangeConfig{
			ResendInitial: DefaultResendInitial, ResendMax: DefaultResendMax,
			ResendGiveUp: DefaultResendGiveUp, GapTimeout: DefaultGapTimeout,
			MPSExchange: DefaultMPSExchange,
		},
		Auth:    AuthConfig{OIDCUserClaim: DefaultOIDCUserClaim, OIDCUnitClaim: DefaultOIDCUnitClaim, OIDCRolesClaim: DefaultOIDCRolesClaim},
		Ingress: IngressConfig{Enabled: true},
		CityBus: CityBusConfig{Exchange: DefaultCityExchange, Node: DefaultCityNode},
	}
}

// fileConfig mirrors the YAML file. Every leaf is a *string so that an absent
// key is told from an empty one and every value is parsed (and its error
// named) in one place.
type fileConfig struct {
	Mode        *string `yaml:"mode"`
	DevIdentity *string `yaml:"dev_identity"`
	Database    struct {
		URL *string `yaml:"url"`
	} `yaml:"database"`
	AMQP struct {
		URL *string `yaml:"url"`
	} `yaml:"amqp"`
	Keys struct {
		Dir            *string `yaml:"dir"`
		PassphraseFile *string `yaml:"passphrase_file"`
	} `yaml:"keys"`
	HTTP struct {
		Addr    *string `yaml:"addr"`
		TLSCert *string `yaml:"tls_cert"`
		TLSKey  *string `yaml:"tls_key"`
	} `yaml:"http"`
	Auth struct {
		Units               *string `yaml:"units"`
		GatewayCerts        *string `yaml:"gateway_certs"`
		GatewayFingerprints *string `yaml:"gateway_fingerprints"`
		GatewayClientCA     *string `yaml:"gateway_client_ca"`
		OIDCIssuer          *string `yaml:"oidc_issuer"`
		OIDCClientID        *string `yaml:"oidc_client_id"`
		OIDCUserClaim       *string `yaml:"oidc_user_claim"`
		OIDCUnitClaim       *string `yaml:"oidc_unit_claim"`
		OIDCRolesClaim      *string `yaml:"oidc_roles_claim"`
	} `yaml:"auth"`
	Categories *string `yaml:"categories"`
	Log        struct {
		Level       *string `yaml:"level"`
		SystemLevel *string `yaml:"system_level"`
		Retention   *string `yaml:"retention"`
		ArchiveDir  *string `yaml:"archive_dir"`
	} `yaml:"log"`
	Shutdown struct {
		Timeout *string `yaml:"timeout"`
	} `yaml:"shutdown"`
	Audit struct {
		CheckpointInterval *string `yaml:"checkpoint_interval"`
		Retention          *string `yaml:"retention"`
		ArchiveDir         *string `yaml:"archive_dir"`
		VerifyInterval     *string `yaml:"verify_interval"`
	} `yaml:"audit"`
	Exchange struct {
		ResendInitial *string `yaml:"resend_initial"`
		ResendMax     *string `yaml:"resend_max"`
		ResendGiveUp  *string `yaml:"resend_giveup"`
		GapTimeout    *string `yaml:"gap_timeout"`
		MPSExchange   *string `yaml:"mps_exchange"`
	} `yaml:"exchange"`
	SecPlatform struct {
		Addr   *string `yaml:"addr"`
		TLS    *string `yaml:"tls"`
		CAFile *string `yaml:"ca_file"`
	} `yaml:"security_platform"`
	Ingress struct {
		Enabled *string `yaml:"enabled"`
	} `yaml:"ingress"`
	CityBus struct {
		Enabled  *string `yaml:"enabled"`
		Exchange *string `yaml:"exchange"`
		Node     *string `yaml:"node"`
	} `yaml:"city_bus"`
}

// field describes one configuration key.
type field struct {
	key string // YAML path
	env string
	// file returns the key's slot in the decoded file.
	file func(*fileConfig) *string
	// set parses a value into c.
	set func(c *Config, v string) error
}

var errEmpty = errors.New("must not be empty")

func setString(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func setDuration(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 30s, 1m): %q", v)
		}
		*dst(c) = d
		return nil
	}
}

func setList(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		*dst(c) = out
		return nil
	}
}

// fields lists every key, in the order errors are reported.
func fields() []field {
	return []field{
		{"mode", "ZHIANHUB_MODE",
			func(f *fileConfig) *string { return f.Mode },
			func(c *Config, v string) error { c.Mode = Mode(strings.TrimSpace(v)); return nil }},
		{"dev_identity", "ZHIANHUB_DEV_IDENTITY",
			func(f *fileConfig) *string { return f.DevIdentity },
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("not a boolean (true or false): %q", v)
				}
				c.DevIdentity = b
				return nil
			}},
		{"database.url", "ZHIANHUB_DATABASE_URL",
			func(f *fileConfig) *string { return f.Database.URL },
			setString(func(c *Config) *string { return &c.Database.URL })},
		{"amqp.url", "ZHIANHUB_AMQP_URL",
			func(f *fileConfig) *string { return f.AMQP.URL },
			setString(func(c *Config) *string { return &c.AMQP.URL })},
		{"keys.dir", "ZHIANHUB_KEYS_DIR",
			func(f *fileConfig) *string { return f.Keys.Dir },
			setString(func(c *Config) *string { return &c.Keys.Dir })},
		{"keys.passphrase_file", "ZHIANHUB_KEYS_PASSPHRASE_FILE",
			func(f *fileConfig) *string { return f.Keys.PassphraseFile },
			setString(func(c *Config) *string { return &c.Keys.PassphraseFile })},
		{"http.addr", "ZHIANHUB_HTTP_ADDR",
			func(f *fileConfig) *string { return f.HTTP.Addr },
			setString(func(c *Config) *string { return &c.HTTP.Addr })},
		{"http.tls_cert", "ZHIANHUB_HTTP_TLS_CERT",
			func(f *fileConfig) *string { return f.HTTP.TLSCert },
			setString(func(c *Config) *string { return &c.HTTP.TLSCert })},
		{"http.tls_key", "ZHIANHUB_HTTP_TLS_KEY",
			func(f *fileConfig) *string { return f.HTTP.TLSKey },
			setString(func(c *Config) *string { return &c.HTTP.TLSKey })},
		{"categories", "ZHIANHUB_CATEGORIES",
			func(f *fileConfig) *string { return f.Categories },
			setString(func(c *Config) *string { return &c.Categories })},
		{"log.level", "ZHIANHUB_LOG_LEVEL",
			func(f *fileConfig) *string { return f.Log.Level },
			func(c *Config, v string) error { c.Log.Level = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{"log.system_level", "ZHIANHUB_LOG_SYSTEM_LEVEL",
			func(f *fileConfig) *string { return f.Log.SystemLevel },
			func(c *Config, v string) error { c.Log.SystemLevel = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{"log.retention", "ZHIANHUB_LOG_RETENTION",
			func(f *fileConfig) *string { return f.Log.Retention },
			setDuration(func(c *Config) *time.Duration { return &c.Log.Retention })},
		{"log.archive_dir", "ZHIANHUB_LOG_ARCHIVE_DIR",
			func(f *fileConfig) *string { return f.Log.ArchiveDir },
			setString(func(c *Config) *string { return &c.Log.ArchiveDir })},
		{"shutdown.timeout", "ZHIANHUB_SHUTDOWN_TIMEOUT",
			func(f *fileConfig) *string { return f.Shutdown.Timeout },
			setDuration(func(c *Config) *time.Duration { return &c.Shutdown.Timeout })},
		{"audit.checkpoint_interval", "ZHIANHUB_AUDIT_CHECKPOINT_INTERVAL",
			func(f *fileConfig) *string { return f.Audit.CheckpointInterval },
			setDuration(func(c *Config) *time.Duration { return &c.Audit.CheckpointInterval })},
		{"audit.retention", "ZHIANHUB_AUDIT_RETENTION",
			func(f *fileConfig) *string { return f.Audit.Retention },
			setDuration(func(c *Config) *time.Duration { return &c.Audit.Retention })},
		{"audit.archive_dir", "ZHIANHUB_AUDIT_ARCHIVE_DIR",
			func(f *fileConfig) *string { return f.Audit.ArchiveDir },
			setString(func(c *Config) *string { return &c.Audit.ArchiveDir })},
		{"audit.verify_interval", "ZHIANHUB_AUDIT_VERIFY_INTERVAL",
			func(f *fileConfig) *string { return f.Audit.VerifyInterval },
			setDuration(func(c *Config) *time.Duration { return &c.Audit.VerifyInterval })},
		{"exchange.resend_initial", "ZHIANHUB_RESEND_INITIAL",
			func(f *fileConfig) *string { return f.Exchange.ResendInitial },
			setDuration(func(c *Config) *time.Duration { return &c.Exchange.ResendInitial })},
		{"exchange.resend_max", "ZHIANHUB_RESEND_MAX",
			func(f *fileConfig) *string { return f.Exchange.ResendMax },
			setDuration(func(c *Config) *time.Duration { return &c.Exchange.ResendMax })},
		{"exchange.resend_giveup", "ZHIANHUB_RESEND_GIVEUP",
			func(f *fileConfig) *string { return f.Exchange.ResendGiveUp },
			setDuration(func(c *Config) *time.Duration { return &c.Exchange.ResendGiveUp })},
		{"exchange.gap_timeout", "ZHIANHUB_GAP_TIMEOUT",
			func(f *fileConfig) *string { return f.Exchange.GapTimeout },
			setDuration(func(c *Config) *time.Duration { return &c.Exchange.GapTimeout })},
		{"exchange.mps_exchange", "ZHIANHUB_MPS_EXCHANGE",
			func(f *fileConfig) *string { return f.Exchange.MPSExchange },
			setString(func(c *Config) *string { return &c.Exchange.MPSExchange })},
		{"security_platform.addr", "ZHIANHUB_SECPLATFORM_ADDR",
			func(f *fileConfig) *string { return f.SecPlatform.Addr },
			setString(func(c *Config) *string { return &c.SecPlatform.Addr })},
		{"security_platform.tls", "ZHIANHUB_SECPLATFORM_TLS",
			func(f *fileConfig) *string { return f.SecPlatform.TLS },
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("not a boolean (true or false): %q", v)
				}
				c.SecPlatform.TLS = b
				return nil
			}},
		{"security_platform.ca_file", "ZHIANHUB_SECPLATFORM_CA_FILE",
			func(f *fileConfig) *string { return f.SecPlatform.CAFile },
			setString(func(c *Config) *string { return &c.SecPlatform.CAFile })},
		{"ingress.enabled", "ZHIANHUB_INGRESS_ENABLED",
			func(f *fileConfig) *string { return f.Ingress.Enabled },
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("not a boolean (true or false): %q", v)
				}
				c.Ingress.Enabled = b
				return nil
			}},
		{"city_bus.enabled", "ZHIANHUB_CITY_BUS_ENABLED",
			func(f *fileConfig) *string { return f.CityBus.Enabled },
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("not a boolean (true or false): %q", v)
				}
				c.CityBus.Enabled = b
				return nil
			}},
		{"city_bus.exchange", "ZHIANHUB_CITY_EXCHANGE",
			func(f *fileConfig) *string { return f.CityBus.Exchange },
			setString(func(c *Config) *string { return &c.CityBus.Exchange })},
		{"city_bus.node", "ZHIANHUB_CITY_NODE",
			func(f *fileConfig) *string { return f.CityBus.Node },
			setString(func(c *Config) *string { return &c.CityBus.Node })},
		{"auth.units", "ZHIANHUB_AUTH_UNITS",
			func(f *fileConfig) *string { return f.Auth.Units },
			setString(func(c *Config) *string { return &c.Auth.Units })},
		{"auth.gateway_certs", "ZHIANHUB_AUTH_GATEWAY_CERTS",
			func(f *fileConfig) *string { return f.Auth.GatewayCerts },
			setList(func(c *Config) *[]string { return &c.Auth.GatewayCerts })},
		{"auth.gateway_fingerprints", "ZHIANHUB_AUTH_GATEWAY_FINGERPRINTS",
			func(f *fileConfig) *string { return f.Auth.GatewayFingerprints },
			setList(func(c *Config) *[]string { return &c.Auth.GatewayFingerprints })},
		{"auth.gateway_client_ca", "ZHIANHUB_AUTH_GATEWAY_CLIENT_CA",
			func(f *fileConfig) *string { return f.Auth.GatewayClientCA },
			setString(func(c *Config) *string { return &c.Auth.GatewayClientCA })},
		{"auth.oidc_issuer", "ZHIANHUB_AUTH_OIDC_ISSUER",
			func(f *fileConfig) *string { return f.Auth.OIDCIssuer },
			setString(func(c *Config) *string { return &c.Auth.OIDCIssuer })},
		{"auth.oidc_client_id", "ZHIANHUB_AUTH_OIDC_CLIENT_ID",
			func(f *fileConfig) *string { return f.Auth.OIDCClientID },
			setString(func(c *Config) *string { return &c.Auth.OIDCClientID })},
		{"auth.oidc_user_claim", "ZHIANHUB_AUTH_OIDC_USER_CLAIM",
			func(f *fileConfig) *string { return f.Auth.OIDCUserClaim },
			setString(func(c *Config) *string { return &c.Auth.OIDCUserClaim })},
		{"auth.oidc_unit_claim", "ZHIANHUB_AUTH_OIDC_UNIT_CLAIM",
			func(f *fileConfig) *string { return f.Auth.OIDCUnitClaim },
			setString(func(c *Config) *string { return &c.Auth.OIDCUnitClaim })},
		{"auth.oidc_roles_claim", "ZHIANHUB_AUTH_OIDC_ROLES_CLAIM",
			func(f *fileConfig) *string { return f.Auth.OIDCRolesClaim },
			setString(func(c *Config) *string { return &c.Auth.OIDCRolesClaim })},
	}
}

// envOf returns the environment variable of a YAML key.
func envOf(key string) string {
	for _, f := range fields() {
		if f.key == key {
			return f.env
		}
	}
	return ""
}

// keyError names a key in an error.
func keyError(key string, err error) error {
	return fmt.Errorf("config: %s (%s): %w", envOf(key), key, err)
}

// Load reads the configuration: defaults, then the YAML file at path (or at
// $ZHIANHUB_CONFIG when path is ""; no file at all when both are empty), then
// the non-empty ZHIANHUB_* variables of getenv, then Validate. getenv nil
// means no environment. All problems found are returned together.
func Load(path string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if path == "" {
		path = getenv(EnvFile)
	}
	var fc fileConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: file (%s): %w", EnvFile, err)
		}
		if err := decodeFile(b, &fc); err != nil {
			return Config{}, fmt.Errorf("config: file %s: %w", path, err)
		}
	}

	c := Default()
	c.File = path
	var errs []error
	devIdentitySet, ingressSet := false, false
	for _, f := range fields() {
		v, ok := "", false
		if p := f.file(&fc); p != nil {
			v, ok = *p, true
		}
		if e := getenv(f.env); e != "" {
			v, ok = e, true
		}
		if !ok {
			continue
		}
		switch f.key {
		case "dev_identity":
			devIdentitySet = true
		case "ingress.enabled":
			ingressSet = true
		}
		if err := f.set(&c, v); err != nil {
			errs = append(errs, keyError(f.key, err))
		}
	}
	if !devIdentitySet {
		// The development identity is on by default only in development.
		c.DevIdentity = c.Mode == ModeDevelopment
	}
	if !ingressSet {
		c.Ingress.Enabled = c.Mode == ModeDevelopment
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// decodeFile decodes one YAML document, rejecting unknown keys. An empty
// file (or one with only comments) is an empty configuration.
func decodeFile(b []byte, fc *fileConfig) error {
	// First walk the document against the known keys, so that an unknown or
	// misplaced key is reported by its full dotted path.
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	if err := checkKeys(doc.Content[0], ""); err != nil {
		return err
	}
	// Then decode strictly into the file struct.
	dec = yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// checkKeys checks a mapping node at prefix ("" or "section.") against the
// known keys: every key must be a known leaf holding a scalar or a known
// section holding a mapping, and none may repeat.
func checkKeys(n *yaml.Node, prefix string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty section
	}
	if n.Kind != yaml.MappingNode {
		if prefix == "" {
			return fmt.Errorf("line %d: the document must be a mapping of keys", n.Line)
		}
		key := strings.TrimSuffix(prefix, ".")
		return fmt.Errorf("line %d: %s must be a mapping (with keys %s)", n.Line, key, strings.Join(subKeys(prefix), ", "))
	}
	seen := map[string]bool{}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		path := prefix + k.Value
		if seen[path] {
			errs = append(errs, fmt.Errorf("line %d: key %s appears twice", k.Line, path))
			continue
		}
		seen[path] = true
		switch {
		case envOf(path) != "":
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, fmt.Errorf("line %d: %s (%s) must be a single value, not a list or mapping", v.Line, path, envOf(path)))
			}
		case len(subKeys(path+".")) > 0:
			if err := checkKeys(v, path+"."); err != nil {
				errs = append(errs, err)
			}
		default:
			errs = append(errs, fmt.Errorf("line %d: unknown key %s", k.Line, path))
		}
	}
	return errors.Join(errs...)
}

// subKeys lists the known keys under prefix ("section.").
func subKeys(prefix string) []string {
	var out []string
	for _, f := range fields() {
		if rest, ok := strings.CutPrefix(f.key, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// Validate checks every key and returns all problems, each naming its key.
// It reads the file system for categories and keys.passphrase_file.
func (c Config) Validate() error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, keyError(key, err))
		}
	}
	prod := c.Mode == ModeProduction

	switch c.Mode {
	case ModeDevelopment, ModeProduction:
	default:
		add("mode", fmt.Errorf("must be %q or %q, not %q", ModeDevelopment, ModeProduction, c.Mode))
	}
	if prod && c.DevIdentity {
		add("dev_identity", errors.New("the development identity must be false in production"))
	}
	add("database.url", validateDatabaseURL(c.Database.URL))
	add("amqp.url", validateAMQPURL(c.AMQP.URL))
	if strings.TrimSpace(c.Keys.Dir) == "" {
		add("keys.dir", errEmpty)
	}
	switch {
	case c.Keys.PassphraseFile != "":
		add("keys.passphrase_file", regularFile(c.Keys.PassphraseFile))
	case prod:
		add("keys.passphrase_file", errors.New("required in production: private keys must be passphrase-protected"))
	}
	add("http.addr", validateAddr(c.HTTP.Addr, prod))
	if c.Categories != "" {
		add("categories", regularFile(c.Categories))
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		add("log.level", err)
	}
	if _, err := ParseLevel(c.Log.SystemLevel); err != nil {
		add("log.system_level", err)
	}
	if c.Log.Retention < 24*time.Hour {
		add("log.retention", fmt.Errorf("must be at least 24h, not %s", c.Log.Retention))
	}
	if strings.TrimSpace(c.Log.ArchiveDir) == "" {
		add("log.archive_dir", errors.New("must not be empty"))
	}
	if c.Shutdown.Timeout <= 0 {
		add("shutdown.timeout", fmt.Errorf("must be positive, not %s", c.Shutdown.Timeout))
	}
	if c.Audit.Retention < 24*time.Hour {
		add("audit.retention", fmt.Errorf("must be at least 24h, not %s", c.Audit.Retention))
	}
	if strings.TrimSpace(c.Audit.ArchiveDir) == "" {
		add("audit.archive_dir", errors.New("must not be empty"))
	}
	if c.Audit.VerifyInterval < time.Second {
		add("audit.verify_interval", fmt.Errorf("must be at least 1s, not %s", c.Audit.VerifyInterval))
	}
	if c.Audit.CheckpointInterval <= 0 {
		add("audit.checkpoint_interval", fmt.Errorf("must be positive, not %s", c.Audit.CheckpointInterval))
	}
	x := c.Exchange
	if x.ResendInitial <= 0 {
		add("exchange.resend_initial", fmt.Errorf("must be positive, not %s", x.ResendInitial))
	}
	if x.ResendMax < x.ResendInitial {
		add("exchange.resend_max", fmt.Errorf("%s is shorter than exchange.resend_initial %s", x.ResendMax, x.ResendInitial))
	}
	if x.ResendGiveUp < x.ResendInitial {
		add("exchange.resend_giveup", fmt.Errorf("%s is shorter than exchange.resend_initial %s", x.ResendGiveUp, x.ResendInitial))
	}
	if x.GapTimeout <= 0 {
		add("exchange.gap_timeout", fmt.Errorf("must be positive, not %s", x.GapTimeout))
	}
	if strings.TrimSpace(x.MPSExchange) == "" || strings.ContainsAny(x.MPSExchange, " #*") {
		add("exchange.mps_exchange", fmt.Errorf("must be an exchange name, not %q", x.MPSExchange))
	}
	if cb := c.CityBus; strings.TrimSpace(cb.Exchange) == "" || strings.ContainsAny(cb.Exchange, " #*") {
		add("city_bus.exchange", fmt.Errorf("must be an exchange name, not %q", cb.Exchange))
	} else if cb.Exchange == x.MPSExchange {
		add("city_bus.exchange", fmt.Errorf("must differ from exchange.mps_exchange %q", x.MPSExchange))
	}
	if n := c.CityBus.Node; len(n) != 12 || strings.Trim(n, "0123456789") != "" {
		add("city_bus.node", fmt.Errorf("must be a 12-digit node code, not %q", n))
	}
	if sp := c.SecPlatform; sp.Addr != "" {
		if _, _, err := net.SplitHostPort(sp.Addr); err != nil {
			add("security_platform.addr", fmt.Errorf("must be host:port: %w", err))
		}
	}
	if sp := c.SecPlatform; sp.CAFile != "" {
		if !sp.TLS {
			add("security_platform.ca_file", errors.New("is set but security_platform.tls is false"))
		} else if err := regularFile(sp.CAFile); err != nil {
			add("security_platform.ca_file", err)
		}
	}
	c.validateTLS(add)
	c.validateAuth(add, prod)
	return errors.Join(errs...)
}

func regularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("file %q: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	return nil
}

func validateDatabaseURL(s string) error {
	if strings.TrimSpace(s) == "" {
		return errEmpty
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %s", redactErr(err, s))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("scheme must be postgres:// or postgresql://, not %q", u.Scheme+"://")
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return errors.New("host missing")
	}
	if strings.Trim(u.Path, "/") == "" {
		return errors.New("database name missing")
	}
	return nil
}

func validateAMQPURL(s string) error {
	if strings.TrimSpace(s) == "" {
		return errEmpty
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %s", redactErr(err, s))
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("scheme must be amqp:// or amqps://, not %q", u.Scheme+"://")
	}
	if u.Hostname() == "" {
		return errors.New("host missing")
	}
	_, err = amqpVhost(s)
	return err
}

// amqpVhost returns the vhost of an AMQP URL: the single path segment,
// unescaped (/%2f is the vhost "/").
func amqpVhost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	p := strings.TrimPrefix(u.EscapedPath(), "/")
	if p == "" {
		return "", errors.New("vhost missing: give it as the URL path, e.g. /%2f for the default vhost \"/\"")
	}
	if strings.Contains(p, "/") {
		return "", errors.New("vhost must be one path segment: escape \"/\" as %2f")
	}
	v, err := url.PathUnescape(p)
	if err != nil {
		return "", fmt.Errorf("vhost: %w", err)
	}
	return v, nil
}

func validateAddr(addr string, prod bool) error {
	if strings.TrimSpace(addr) == "" {
		return errEmpty
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port: %q", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number 0-65535, not %q", port)
	}
	if prod {
		// A production hub binds one chosen interface of the police network
		// on a fixed port, never every interface.
		if n == 0 {
			return errors.New("production needs a fixed port, not 0")
		}
		if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
			return fmt.Errorf("production must bind one interface address, not all interfaces (%q)", addr)
		}
	}
	return nil
}

// redactErr renders a url.Parse error without the (possibly secret) URL.
func redactErr(err error, raw string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), raw, "<url>")
}

// redactURL hides the password of a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid url>"
	}
	return u.Redacted()
}

// Redacted renders the configuration for logs, one key=value per key, with
// the passwords of URLs replaced by xxxxx.
func (c Config) Redacted() string {
	var b strings.Builder
	for i, kv := range c.redactedPairs() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", kv[0], strconv.Quote(kv[1]))
	}
	return b.String()
}

// RedactedMap is the configuration as Redacted shows it, by key.
func (c Config) RedactedMap() map[string]string {
	out := map[string]string{}
	for _, kv := range c.redactedPairs() {
		out[kv[0]] = kv[1]
	}
	return out
}

func (c Config) redactedPairs() [][2]string {
	return [][2]string{
		{"file", c.File},
		{"mode", string(c.Mode)},
		{"dev_identity", strconv.FormatBool(c.DevIdentity)},
		{"database.url", redactURL(c.Database.URL)},
		{"amqp.url", redactURL(c.AMQP.URL)},
		{"keys.dir", c.Keys.Dir},
		{"keys.passphrase_file", c.Keys.PassphraseFile},
		{"http.addr", c.HTTP.Addr},
		{"categories", c.Categories},
		{"log.level", c.Log.Level},
		{"log.system_level", c.Log.SystemLevel},
		{"log.retention", c.Log.Retention.String()},
		{"log.archive_dir", c.Log.ArchiveDir},
		{"shutdown.timeout", c.Shutdown.Timeout.String()},
		{"audit.checkpoint_interval", c.Audit.CheckpointInterval.String()},
		{"audit.retention", c.Audit.Retention.String()},
		{"audit.archive_dir", c.Audit.ArchiveDir},
		{"audit.verify_interval", c.Audit.VerifyInterval.String()},
		{"security_platform.addr", c.SecPlatform.Addr},
		{"security_platform.tls", strconv.FormatBool(c.SecPlatform.TLS)},
		{"security_platform.ca_file", c.SecPlatform.CAFile},
		{"ingress.enabled", strconv.FormatBool(c.Ingress.Enabled)},
		{"city_bus.enabled", strconv.FormatBool(c.CityBus.Enabled)},
		{"city_bus.exchange", c.CityBus.Exchange},
		{"city_bus.node", c.CityBus.Node},
		{"http.tls_cert", c.HTTP.TLSCert},
		{"auth.units", c.Auth.Units},
		{"auth.gateway_certs", strings.Join(c.Auth.GatewayCerts, ",")},
		{"auth.gateway_fingerprints", strings.Join(c.Auth.GatewayFingerprints, ",")},
		{"auth.gateway_client_ca", c.Auth.GatewayClientCA},
		{"auth.oidc_issuer", c.Auth.OIDCIssuer},
		{"auth.oidc_client_id", c.Auth.OIDCClientID},
	}
}
