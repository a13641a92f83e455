// Package moduleacl turns the module ACL of the configuration (which
// internal module may publish and subscribe to which event kinds) into
// RabbitMQ users and permissions, as rabbitmqctl commands.
//
// Every module has its own RabbitMQ user (its name, also the from of its
// events and the user_id the hub checks). Its permissions on the vhost:
//
//	configure  ^(module\.<name>\..*|amq\.gen-.*)$          its own queues
//	write      ^(zhian\.ingress|module\.<name>\..*|amq\.gen-.*)$
//	read       ^(zhian\.events|module\.<name>\..*|amq\.gen-.*)$
//
// and its topic permissions (regular expressions on the routing key = the
// event kind): on zhian.ingress it may write (publish) exactly its publish
// kinds and read nothing; on zhian.events it may read (bind its queues
// with) exactly its subscribe kinds and write nothing. The broker enforces
// both, so a module cannot publish a kind it is not allowed to, nor listen
// to one; the hub's ingress then checks each event against its contract.
//
// The management plugin is not needed: Plan lists rabbitmqctl commands and
// Apply runs them. Passwords are never in the commands: each module's
// password is a file <PasswordDir>/<name>.pass, given to add_user on its
// standard input (Apply creates a random one when the file is missing).
package moduleacl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"zhianhub/contracts/events"
)

// ErrInvalid is wrapped by every ACL validation error.
var ErrInvalid = errors.New("moduleacl: invalid ACL")

var nameRE = regexp.MustCompile(events.ModulePattern)

// Module is one internal module and the event kinds it may use.
type Module struct {
	Name      string   `yaml:"name"`
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
}

// ACL is the module ACL: the modules of one vhost.
type ACL struct {
	// VHost is the RabbitMQ virtual host; default "/".
	VHost string `yaml:"vhost"`
	// IngressExchange and EventsExchange default to zhian.ingress and
	// zhian.events (tests use their own).
	IngressExchange string   `yaml:"ingress_exchange"`
	EventsExchange  string   `yaml:"events_exchange"`
	Modules         []Module `yaml:"modules"`
}

// Kinds tells the ACL which kinds exist and which modules may publish;
// *events.Registry satisfies it.
type Kinds interface {
	Get(kind string) (events.Event, bool)
}

// Load reads an ACL file (YAML; unknown keys are errors), sets the defaults
// and validates it against kinds.
func Load(path string, kinds Kinds) (ACL, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ACL{}, fmt.Errorf("moduleacl: %w", err)
	}
	var a ACL
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		return ACL{}, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	a.SetDefaults()
	if err := a.Validate(kinds); err != nil {
		return ACL{}, err
	}
	return a, nil
}

// SetDefaults fills the vhost and the exchange names.
func (a *ACL) SetDefaults() {
	if a.VHost == "" {
		a.VHost = "/"
	}
	if a.IngressExchange == "" {
		a.IngressExchange = events.IngressExchange
	}
	if a.EventsExchange == "" {
		a.EventsExchange = events.EventsExchange
	}
}

// Validate checks module names (unique, events.ModulePattern, not "guest"),
// that every publish kind is a module kind and every subscribe kind exists,
// without repeats.
func (a ACL) Validate(kinds Kinds) error {
	var errs []error
	seen := map[string]bool{}
	for i, m := range a.Modules {
		at := fmt.Sprintf("modules[%d]", i)
		switch {
		case !nameRE.MatchString(m.Name):
			errs = append(errs, fmt.Errorf("%s.name %q: not a module name (%s)", at, m.Name, events.ModulePattern))
		case m.Name == "guest":
			errs = append(errs, fmt.Errorf("%s.name: guest is RabbitMQ's own user", at))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("%s.name %q: repeated", at, m.Name))
		}
		seen[m.Name] = true
		for j, k := range m.Publish {
			e, ok := kinds.Get(k)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s.publish[%d] %q: unknown kind", at, j, k))
			case !e.Module:
				errs = append(errs, fmt.Errorf("%s.publish[%d] %q: only the hub publishes this kind", at, j, k))
			case slices.Index(m.Publish, k) != j:
				errs = append(errs, fmt.Errorf("%s.publish[%d] %q: repeated", at, j, k))
			}
		}
		for j, k := range m.Subscribe {
			if _, ok := kinds.Get(k); !ok {
				errs = append(errs, fmt.Errorf("%s.subscribe[%d] %q: unknown kind", at, j, k))
			} else if slices.Index(m.Subscribe, k) != j {
				errs = append(errs, fmt.Errorf("%s.subscribe[%d] %q: repeated", at, j, k))
			}
		}
	}
	if a.VHost == "" || a.IngressExchange == "" || a.EventsExchange == "" || a.IngressExchange == a.EventsExchange {
		errs = append(errs, errors.New("vhost and two distinct exchanges are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Command is one rabbitmqctl invocation.
type Command struct {
	// Args are rabbitmqctl's arguments.
	Args []string
	// Stdin names the file whose content is the command's standard input
	// (the password of add_user and change_password), "" for none.
	Stdin string
}

// String is the command as a shell line.
func (c Command) String() string {
	words := []string{"rabbitmqctl"}
	for _, a := range c.Args {
		words = append(words, shellQuote(a))
	}
	s := strings.Join(words, " ")
	if c.Stdin != "" {
		s += " < " + shellQuote(c.Stdin)
	}
	return s
}

func shellQuote(s string) string {
	if s != "" && regexp.MustCompile(`^[A-Za-z0-9_./:=-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// PasswordFile is the password file of module in dir.
func PasswordFile(dir, module string) string {
	return strings.TrimSuffix(dir, "/") + "/" + module + ".pass"
}

// kindsRE is a regular expression matching exactly the given kinds;
// nothing but the empty routing key when there are none.
func kindsRE(kinds []string) string {
	if len(kinds) == 0 {
		return "^$"
	}
	q := make([]string, len(kinds))
	for i, k := range kinds {
		q[i] = regexp.QuoteMeta(k)
	}
	return "^(" + strings.Join(q, "|") + ")$"
}

// Permissions returns a module's vhost permissions (configure, write, read).
func (a ACL) Permissions(m Module) (configure, write, read string) {
	own := `module\.` + regexp.QuoteMeta(m.Name) + `\..*|amq\.gen-.*`
	return "^(" + own + ")$",
		"^(" + regexp.QuoteMeta(a.IngressExchange) + "|" + own + ")$",
		"^(" + regexp.QuoteMeta(a.EventsExchange) + "|" + own + ")$"
}

// Plan returns the commands that set up every module: add_user (the
// password on standard input from PasswordFile(passwordDir, name)),
// set_permissions on the vhost, and set_topic_permissions on the ingress
// exchange (write = publish kinds) and the events exchange (read =
// subscribe kinds). exists lists users that already exist: they get
// change_password instead of add_user (nil: all are new).
func (a ACL) Plan(passwordDir string, exists map[string]bool) []Command {
	var out []Command
	for _, m := range a.Modules {
		pw := PasswordFile(passwordDir, m.Name)
		if exists[m.Name] {
			out = append(out, Command{Args: []string{"change_password", m.Name}, Stdin: pw})
		} else {
			out = append(out, Command{Args: []string{"add_user", m.Name}, Stdin: pw})
		}
		c, w, r := a.Permissions(m)
		out = append(out,
			Command{Args: []string{"set_permissions", "-p", a.VHost, m.Name, c, w, r}},
			Command{Args: []string{"set_topic_permissions", "-p", a.VHost, m.Name, a.IngressExchange, kindsRE(m.Publish), "^$"}},
			Command{Args: []string{"set_topic_permissions", "-p", a.VHost, m.Name, a.EventsExchange, "^$", kindsRE(m.Subscribe)}},
		)
	}
	return out
}
