package mpssim_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
)

func TestIDCheckChar(t *testing.T) {
	tests := []struct {
		first17 string
		want    byte
	}{
		{"11010519491231002", 'X'}, // the GB 11643 example
		{"44052418800101001", '4'},
		{"31011519900307123", '9'},
	}
	for _, tt := range tests {
		t.Run(tt.first17, func(t *testing.T) {
			if got := mpssim.IDCheckChar(tt.first17); got != tt.want {
				t.Fatalf("IDCheckChar(%s) = %c, want %c", tt.first17, got, tt.want)
			}
		})
	}
	id := mpssim.ResidentIDNumber("310115", time.Date(1990, 3, 7, 0, 0, 0, 0, time.UTC), 123)
	if id != "310115199003071239" {
		t.Fatalf("ResidentIDNumber = %s", id)
	}
}

// TestGeneratorValid checks that 200 generated messages pass the contract
// validator, follow the story order and number seq per person from 1.
func TestGeneratorValid(t *testing.T) {
	v, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mpssim.NewGenerator(mpssim.GeneratorConfig{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 2, 28, 23, 30, 0, 0, time.UTC) // a date edge in Shanghai
	var stories []*mpssim.Story
	seqs := map[string]int64{}
	kinds := map[string]int{}
	persons := map[string]bool{}
	for n := 0; n < 200; n++ {
		if len(stories) < 5 {
			st := g.NewStory(now)
			if persons[st.PersonNo] {
				t.Fatalf("personNo %s generated twice", st.PersonNo)
			}
			persons[st.PersonNo] = true
			stories = append(stories, st)
		}
		i := n % len(stories)
		st := stories[i]
		want := st.NextKind()
		seqs[st.PersonNo]++
		kind, payload, ok := st.Next(now, seqs[st.PersonNo])
		if !ok || kind != want {
			t.Fatalf("Next = %s %v, want %s", kind, ok, want)
		}
		got, err := v.ValidatePayload(kind, payload)
		if err != nil {
			t.Fatalf("message %d (%s) invalid: %v\n%s", n, kind, err, payload)
		}
		h := got.(contracts.Ordered).Ordering()
		if h.PersonNo != st.PersonNo || h.Seq != seqs[st.PersonNo] {
			t.Fatalf("header %+v, want %s/%d", h, st.PersonNo, seqs[st.PersonNo])
		}
		if p, ok := got.(*contracts.Person); ok {
			if p.HukouRegion[:2] != "31" || p.IDNo[:6] != p.HukouRegion {
				t.Errorf("person not of Shanghai: %+v", p)
			}
			var raw map[string]any
			_ = json.Unmarshal(payload, &raw)
			if name := raw["name"].(string); len([]rune(name)) < 3 || name[len(name)-len("测试"):] != "测试" {
				t.Errorf("name %q is not clearly fictitious", name)
			}
		}
		kinds[kind]++
		if st.Remaining() == 0 {
			stories = append(stories[:i], stories[i+1:]...)
		}
		now = now.Add(37 * time.Minute)
	}
	for _, k := range mpssim.StoryKinds {
		if kinds[k] == 0 {
			t.Errorf("no %s generated", k)
		}
	}
}

// TestGeneratorCategories draws categories from the configured table.
func TestGeneratorCategories(t *testing.T) {
	cats, err := contracts.ParseCategories(strings.NewReader("code\tname\n7777\t测试类别\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := mpssim.NewGenerator(mpssim.GeneratorConfig{Categories: cats, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, payload, _ := g.NewStory(time.Now()).Next(time.Now(), 1)
	var p contracts.Person
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Categories) != 1 || p.Categories[0] != "7777" {
		t.Fatalf("categories %v, want [7777]", p.Categories)
	}
}
