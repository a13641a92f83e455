package auth

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// UnitTree is the tree of public-security units (市局 > 分局 > 派出所) that
// bounds what a user sees: the records of the user's own unit and of the
// units below it. It is loaded from a YAML file (deploy/units.example.yaml):
//
//	units:
//	  - code: "310000000000"
//	    name: 上海市公安局
//	    children:
//	      - code: "310104000000"
//	        name: 徐汇分局
//	        children:
//	          - {code: "310104010000", name: 天平路派出所}
type UnitTree struct {
	parent map[string]string // code → parent code ("" for a root)
	name   map[string]string
}

type unitNode struct {
	Code     string     `yaml:"code"`
	Name     string     `yaml:"name"`
	Children []unitNode `yaml:"children"`
}

// MaxUnitDepth bounds the tree's depth.
const MaxUnitDepth = 8

// ParseUnitTree parses a unit tree document.
func ParseUnitTree(b []byte) (*UnitTree, error) {
	var doc struct {
		Units []unitNode `yaml:"units"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("auth: unit tree: %w", err)
	}
	if len(doc.Units) == 0 {
		return nil, errors.New("auth: unit tree: no units")
	}
	t := &UnitTree{parent: map[string]string{}, name: map[string]string{}}
	var errs []error
	var walk func(n unitNode, parent string, depth int)
	walk = func(n unitNode, parent string, depth int) {
		switch {
		case !ValidUnit(n.Code):
			errs = append(errs, fmt.Errorf("unit %q (under %q): code must be 12 digits", n.Code, parent))
			return
		case strings.TrimSpace(n.Name) == "":
			errs = append(errs, fmt.Errorf("unit %s: name missing", n.Code))
		case depth > MaxUnitDepth:
			errs = append(errs, fmt.Errorf("unit %s: deeper than %d levels", n.Code, MaxUnitDepth))
			return
		}
		if _, dup := t.parent[n.Code]; dup {
			errs = append(errs, fmt.Errorf("unit %s appears twice", n.Code))
			return
		}
		t.parent[n.Code], t.name[n.Code] = parent, n.Name
		for _, c := range n.Children {
			walk(c, n.Code, depth+1)
		}
	}
	for _, n := range doc.Units {
		walk(n, "", 1)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: unit tree: %w", err)
	}
	return t, nil
}

// LoadUnitTree reads and parses a unit tree file.
func LoadUnitTree(path string) (*UnitTree, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: unit tree: %w", err)
	}
	return ParseUnitTree(b)
}

// Len returns the number of units.
func (t *UnitTree) Len() int { return len(t.parent) }

// Name returns the unit's name ("" when unknown).
func (t *UnitTree) Name(code string) string { return t.name[code] }

// Contains reports whether the unit is in the tree.
func (t *UnitTree) Contains(code string) bool { _, ok := t.parent[code]; return ok }

// Codes returns the codes of every unit, sorted.
func (t *UnitTree) Codes() []string {
	out := make([]string, 0, len(t.parent))
	for code := range t.parent {
		out = append(out, code)
	}
	slices.Sort(out)
	return out
}

// InScope reports whether a user of unit userUnit may see a record of unit
// recordUnit: the same unit, or one below it in the tree. A user without a
// unit sees nothing; a user whose unit is not in the tree sees only records
// of exactly that unit.
func (t *UnitTree) InScope(userUnit, recordUnit string) bool {
	if userUnit == "" || recordUnit == "" {
		return false
	}
	for u, hops := recordUnit, 0; u != "" && hops <= MaxUnitDepth; u, hops = t.parent[u], hops+1 {
		if u == userUnit {
			return true
		}
	}
	return false
}

// Parent returns the unit above code ("" for a root or an unknown unit).
func (t *UnitTree) Parent(code string) string { return t.parent[code] }

// IsRoot reports whether code is a root of the tree (the city bureau):
// its scope is the whole tree.
func (t *UnitTree) IsRoot(code string) bool {
	p, ok := t.parent[code]
	return ok && p == ""
}

// Chain returns code and the units above it, nearest first (just code
// when it is not in the tree; nothing for "").
func (t *UnitTree) Chain(code string) []string {
	var out []string
	for u, hops := code, 0; u != "" && hops <= MaxUnitDepth; u, hops = t.parent[u], hops+1 {
		out = append(out, u)
	}
	return out
}

// Subtree returns code and every unit below it, sorted (just code when it
// is not in the tree).
func (t *UnitTree) Subtree(code string) []string {
	var out []string
	for u := range t.parent {
		if t.InScope(code, u) {
			out = append(out, u)
		}
	}
	if len(out) == 0 && code != "" {
		out = []string{code}
	}
	slices.Sort(out)
	return out
}

// Scope returns the units a user of unit userUnit may see (InScope): its
// Subtree, or only userUnit itself when it is not in the tree. A user
// without a unit sees none.
func (t *UnitTree) Scope(userUnit string) []string {
	if userUnit == "" {
		return nil
	}
	if s := t.Subtree(userUnit); s != nil {
		return s
	}
	return []string{userUnit}
}

// demoUnits is deploy/units.example.yaml (a test keeps them equal).
//
//go:embed units_demo.yaml
var demoUnits []byte

// DemoUnitTree returns the example unit tree of deploy/units.example.yaml,
// the default of a development hub.
func DemoUnitTree() *UnitTree {
	t, err := ParseUnitTree(demoUnits)
	if err != nil {
		panic(err) // cannot happen: a test parses it
	}
	return t
}
