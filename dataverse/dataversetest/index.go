package dataversetest

import (
	"slices"
)

// The load tool (cmd/screenpop-bench) sends the emulator hundreds of
// lookups a second, each a filter of some thirty "column eq 'value'"
// comparisons, from the same process and on the same cores as the daemon it
// measures. Evaluating every such filter on every row took a quarter of a
// core; a real Dataverse does this work on its own machines, with indexes.
// So a filter's string equality comparisons first narrow the rows down
// through per-column indexes, and the whole filter is then evaluated on
// those rows alone: the answer is the same, in the same order.

// match returns the rows of t that filter matches (all rows when it is
// nil), in table order. Callers hold the server's mu.
func (t *Table) match(filter *Filter) ([]map[string]any, error) {
	if filter == nil {
		return slices.Clone(t.rows), nil
	}
	scan := t.rows
	if boolean(filter.Root) {
		if c, ok := t.candidates(filter.Root); ok {
			scan = make([]map[string]any, len(c))
			for i, r := range c {
				scan[i] = t.rows[r]
			}
		}
	}
	var rows []map[string]any
	for _, row := range scan {
		v, err := filter.Root.eval(row)
		if err != nil {
			return nil, err
		}
		if b, _ := v.(bool); b {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// boolean reports whether n evaluates to a Boolean without failing on any
// row, by its shape alone. A filter that can fail is evaluated on every row,
// so that it fails as it would on Dataverse whatever the rows.
func boolean(n Node) bool {
	switch n := n.(type) {
	case *binaryNode:
		if n.op == "and" || n.op == "or" {
			return boolean(n.l) && boolean(n.r)
		}
		// A comparison of operands that are not comparable is false.
		return safe(n.l) && safe(n.r)
	case *notNode:
		return boolean(n.x)
	case *funcNode:
		return true
	case *literalNode:
		_, ok := n.v.(bool)
		return ok
	}
	return false
}

// safe reports whether evaluating n cannot fail on any row.
func safe(n Node) bool {
	switch n.(type) {
	case *propNode, *literalNode, *funcNode:
		return true
	}
	return boolean(n)
}

// candidates returns the indexes, ascending, of a superset of the rows of t
// that n can match, and false when n does not narrow the rows down (a full
// scan is then needed). Callers hold s.mu.
func (t *Table) candidates(n Node) ([]int, bool) {
	b, ok := n.(*binaryNode)
	if !ok {
		return nil, false
	}
	switch b.op {
	case "and":
		// Rows matching both sides are among those of either.
		if c, ok := t.candidates(b.l); ok {
			return c, true
		}
		return t.candidates(b.r)
	case "or":
		l, ok := t.candidates(b.l)
		if !ok {
			return nil, false
		}
		r, ok := t.candidates(b.r)
		if !ok {
			return nil, false
		}
		return union(l, r), true
	case "eq":
		p, ok := b.l.(*propNode)
		if !ok {
			return nil, false
		}
		lit, ok := b.r.(*literalNode)
		if !ok {
			return nil, false
		}
		// A string compares equal, case- and accent-insensitively, only to a non-empty
		// string value (an empty one reads as null); see compare.
		v, ok := lit.v.(string)
		if v = trimPad(v); !ok || v == "" {
			return nil, false
		}
		return t.column(p.name)[fold(v)], true
	}
	return nil, false
}

// column is the index of one column: each folded non-empty string value,
// without trailing spaces (see compare), and the rows holding it,
// ascending. It is built on first use and dropped when a row is added.
func (t *Table) column(name string) map[string][]int {
	if ix, ok := t.index[name]; ok {
		return ix
	}
	ix := map[string][]int{}
	for i, row := range t.rows {
		if v, ok := row[name].(string); ok && trimPad(v) != "" {
			k := fold(trimPad(v))
			ix[k] = append(ix[k], i)
		}
	}
	if t.index == nil {
		t.index = map[string]map[string][]int{}
	}
	t.index[name] = ix
	return ix
}

// union merges two ascending lists of row indexes. It may return either
// argument itself; nothing modifies the lists.
func union(a, b []int) []int {
	switch {
	case len(a) == 0:
		return b
	case len(b) == 0:
		return a
	}
	out := make([]int, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
