package moduleacl_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/moduleacl"
	"zhianhub/contracts/events"
)

func registry(t *testing.T) *events.Registry {
	t.Helper()
	r, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name   string
		acl    moduleacl.ACL
		exists map[string]bool
		want   []string
	}{
		{"publisher and subscriber", moduleacl.ACL{Modules: []moduleacl.Module{{Name: "analysis",
			Publish: []string{"warning.issued"}, Subscribe: []string{"lead.registered", "keyperson.task.sign"}}}}, nil,
			[]string{
				`rabbitmqctl add_user analysis < /etc/zhianhub/modules/analysis.pass`,
				`rabbitmqctl set_permissions -p / analysis '^(module\.analysis\..*|amq\.gen-.*)$' '^(zhian\.ingress|module\.analysis\..*|amq\.gen-.*)$' '^(zhian\.events|module\.analysis\..*|amq\.gen-.*)$'`,
				`rabbitmqctl set_topic_permissions -p / analysis zhian.ingress '^(warning\.issued)$' '^$'`,
				`rabbitmqctl set_topic_permissions -p / analysis zhian.events '^$' '^(lead\.registered|keyperson\.task\.sign)$'`,
			}},
		{"subscriber only, existing user, own vhost", moduleacl.ACL{VHost: "zhianhub", Modules: []moduleacl.Module{{Name: "push",
			Subscribe: []string{"warning.issued"}}}}, map[string]bool{"push": true},
			[]string{
				`rabbitmqctl change_password push < /etc/zhianhub/modules/push.pass`,
				`rabbitmqctl set_permissions -p zhianhub push '^(module\.push\..*|amq\.gen-.*)$' '^(zhian\.ingress|module\.push\..*|amq\.gen-.*)$' '^(zhian\.events|module\.push\..*|amq\.gen-.*)$'`,
				`rabbitmqctl set_topic_permissions -p zhianhub push zhian.ingress '^$' '^$'`,
				`rabbitmqctl set_topic_permissions -p zhianhub push zhian.events '^$' '^(warning\.issued)$'`,
			}},
		{"no modules", moduleacl.ACL{}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.acl.SetDefaults()
			if err := tc.acl.Validate(registry(t)); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range tc.acl.Plan("/etc/zhianhub/modules/", tc.exists) {
				got = append(got, c.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    []moduleacl.Module
		want string
	}{
		{"bad name", []moduleacl.Module{{Name: "Analysis"}}, "not a module name"},
		{"guest", []moduleacl.Module{{Name: "guest"}}, "guest"},
		{"repeated module", []moduleacl.Module{{Name: "push"}, {Name: "push"}}, "repeated"},
		{"unknown publish kind", []moduleacl.Module{{Name: "push", Publish: []string{"warning.deleted"}}}, "unknown kind"},
		{"hub kind published", []moduleacl.Module{{Name: "push", Publish: []string{"keyperson.register"}}}, "only the hub"},
		{"repeated kind", []moduleacl.Module{{Name: "push", Subscribe: []string{"warning.issued", "warning.issued"}}}, "repeated"},
		{"unknown subscribe kind", []moduleacl.Module{{Name: "push", Subscribe: []string{"keyperson.*"}}}, "unknown kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := moduleacl.ACL{Modules: tc.m}
			a.SetDefaults()
			err := a.Validate(registry(t))
			if !errors.Is(err, moduleacl.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadExample(t *testing.T) {
	a, err := moduleacl.Load(filepath.Join("..", "..", "deploy", "modules.example.yaml"), registry(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) == 0 || a.VHost != "/" || a.IngressExchange != "zhian.ingress" {
		t.Errorf("%+v", a)
	}
	bad := filepath.Join(t.TempDir(), "acl.yaml")
	if err := os.WriteFile(bad, []byte("modules:\n  - name: push\n    publsh: [warning.issued]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := moduleacl.Load(bad, registry(t)); !errors.Is(err, moduleacl.ErrInvalid) {
		t.Errorf("unknown key: %v", err)
	}
}

// TestApplyRabbitMQ applies an ACL for a module of the test's own with the
// real rabbitmqctl, on exchanges of its own, and checks with the module's
// own connection that the broker lets it publish its kind and refuses
// another, lets it bind its subscribed kind and refuses another. The user
// is deleted at the end.
func TestApplyRabbitMQ(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not available: ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := moduleacl.Rabbitmqctl{}
	if _, err := moduleacl.Users(ctx, r); err != nil {
		t.Skip("rabbitmqctl cannot reach the broker: ", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	name := "test-" + suffix
	acl := moduleacl.ACL{IngressExchange: "test.ingress." + suffix, EventsExchange: "test.events." + suffix,
		Modules: []moduleacl.Module{{Name: name, Publish: []string{"warning.issued"}, Subscribe: []string{"lead.registered"}}}}
	acl.SetDefaults()
	if err := acl.Validate(registry(t)); err != nil {
		t.Fatal(err)
	}

	admin, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/%2f")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ach, err := admin.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range []string{acl.IngressExchange, acl.EventsExchange} {
		if err := ach.ExchangeDeclare(ex, "topic", false, true, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	sink, err := ach.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ach.QueueBind(sink.Name, "#", acl.IngressExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := r.Run(context.Background(), []string{"delete_user", name}, nil); err != nil {
			t.Errorf("delete user: %v", err)
		}
		ach.ExchangeDelete(acl.IngressExchange, false, false)
		ach.ExchangeDelete(acl.EventsExchange, false, false)
	})

	dir := t.TempDir()
	ran, err := moduleacl.Apply(ctx, acl, dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != 4 {
		t.Errorf("ran %d commands", len(ran))
	}
	if st, err := os.Stat(moduleacl.PasswordFile(dir, name)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
	// Applying again is harmless (change_password for the existing user).
	if ran, err = moduleacl.Apply(ctx, acl, dir, r); err != nil || ran[0].Args[0] != "change_password" {
		t.Fatalf("second apply: %v %v", ran, err)
	}
	pw, err := moduleacl.ReadPassword(moduleacl.PasswordFile(dir, name))
	if err != nil {
		t.Fatal(err)
	}

	conn, err := amqp.Dial("amqp://" + name + ":" + pw + "@127.0.0.1:5672/%2f")
	if err != nil {
		t.Fatalf("the module cannot connect with its password: %v", err)
	}
	defer conn.Close()
	publish := func(kind string) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		if err := ch.Confirm(false); err != nil {
			return err
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, acl.IngressExchange, kind, false, false,
			amqp.Publishing{Body: []byte("{}"), UserId: name})
		if err != nil {
			return err
		}
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			if e := <-closed; e != nil {
				return e
			}
			return errors.New("nacked")
		}
		return nil
	}
	bind := func(kind string) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		q, err := ch.QueueDeclare("module."+name+".events", false, true, true, false, nil)
		if err != nil {
			return err
		}
		return ch.QueueBind(q.Name, kind, acl.EventsExchange, false, nil)
	}
	refused := func(err error) bool {
		var ae *amqp.Error
		return errors.As(err, &ae) && ae.Code == amqp.AccessRefused
	}
	if err := publish("warning.issued"); err != nil {
		t.Errorf("publishing an allowed kind: %v", err)
	}
	if err := publish("dispatch.order"); !refused(err) {
		t.Errorf("publishing a kind not allowed: %v, want ACCESS_REFUSED", err)
	}
	if err := bind("lead.registered"); err != nil {
		t.Errorf("binding a subscribed kind: %v", err)
	}
	if err := bind("warning.feedback"); !refused(err) {
		t.Errorf("binding a kind not subscribed: %v, want ACCESS_REFUSED", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.PublishWithContext(ctx, acl.EventsExchange, "lead.registered", false, false, amqp.Publishing{Body: []byte("{}")}); err == nil {
		// The refusal of a publish arrives as a channel close.
		select {
		case e := <-closed:
			if e == nil || e.Code != amqp.AccessRefused {
				t.Errorf("publishing to the events exchange: %v", e)
			}
		case <-time.After(5 * time.Second):
			t.Error("the module may publish to the events exchange")
		}
	}
	// The allowed event reached the ingress exchange.
	if _, ok, err := ach.Get(sink.Name, true); err != nil || !ok {
		t.Errorf("allowed event not routed: %v %v", ok, err)
	}
}
