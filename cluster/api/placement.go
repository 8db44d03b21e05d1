package api

import (
	"fmt"
	"strings"
)

// Constraint is one `deploy.placement.constraints` entry: a node attribute
// compared with == or != to a value.
type Constraint struct {
	Attr  string // "node.hostname", "node.id" or "node.labels.<key>"
	Equal bool
	Value string
}

// String renders the constraint as written.
func (c Constraint) String() string {
	op := "!="
	if c.Equal {
		op = "=="
	}
	return c.Attr + op + c.Value
}

// ParseConstraint parses "node.labels.zone==east" and the like. The error
// says which forms exist.
func ParseConstraint(s string) (Constraint, error) {
	var c Constraint
	attr, val, ok := strings.Cut(s, "==")
	c.Equal = true
	if !ok {
		if attr, val, ok = strings.Cut(s, "!="); !ok {
			return c, fmt.Errorf("placement constraint %q: want ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE", s)
		}
		c.Equal = false
	}
	c.Attr, c.Value = strings.TrimSpace(attr), strings.TrimSpace(val)
	switch {
	case c.Attr == "node.hostname", c.Attr == "node.id":
	case strings.HasPrefix(c.Attr, "node.labels.") && len(c.Attr) > len("node.labels."):
	default:
		return c, fmt.Errorf("placement constraint %q: attribute %q is not supported; use node.hostname, node.id or node.labels.<key>", s, c.Attr)
	}
	return c, nil
}

// Matches reports whether node n satisfies the constraint.
func (c Constraint) Matches(n Node) bool {
	var got string
	var has bool
	switch {
	case c.Attr == "node.hostname", c.Attr == "node.id":
		got, has = n.Name, true
	default:
		got, has = n.Labels[strings.TrimPrefix(c.Attr, "node.labels.")]
	}
	if c.Equal {
		return has && got == c.Value
	}
	return !has || got != c.Value
}

// ParsePlacement checks every constraint and preference of a placement.
func ParsePlacement(p Placement) ([]Constraint, error) {
	var out []Constraint
	for _, s := range p.Constraints {
		c, err := ParseConstraint(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	for _, pref := range p.Preferences {
		if !strings.HasPrefix(pref, "node.labels.") || len(pref) == len("node.labels.") {
			return nil, fmt.Errorf("placement preference spread %q: want spread: node.labels.<key>", pref)
		}
	}
	return out, nil
}
