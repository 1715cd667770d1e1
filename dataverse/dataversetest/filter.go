package dataversetest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Node is a parsed $filter expression. String gives a canonical, fully
// parenthesized form in which string literals are re-quoted, so a test can
// see that a value stayed one literal.
type Node interface {
	String() string
	eval(row map[string]any) (any, error)
	write(b *strings.Builder)
}

type (
	binaryNode struct {
		op   string // eq ne gt ge lt le and or
		l, r Node
	}
	notNode  struct{ x Node }
	funcNode struct {
		name string // contains startswith endswith
		prop *propNode
		arg  *literalNode
	}
	propNode    struct{ name string }
	literalNode struct {
		v    any // string, float64, bool, nil, guid
		text string
	}
	guid string
)

// The canonical forms are written into one builder: concatenating the
// operands' strings at every level is quadratic in the length of a long
// "a or b or c ..." chain, as lookups with many phone variants are.
func str(n Node) string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *binaryNode) String() string  { return str(n) }
func (n *notNode) String() string     { return str(n) }
func (n *funcNode) String() string    { return str(n) }
func (n *propNode) String() string    { return n.name }
func (n *literalNode) String() string { return str(n) }

func (n *binaryNode) write(b *strings.Builder) {
	b.WriteByte('(')
	n.l.write(b)
	b.WriteByte(' ')
	b.WriteString(n.op)
	b.WriteByte(' ')
	n.r.write(b)
	b.WriteByte(')')
}

func (n *notNode) write(b *strings.Builder) {
	b.WriteString("(not ")
	n.x.write(b)
	b.WriteByte(')')
}

func (n *funcNode) write(b *strings.Builder) {
	b.WriteString(n.name)
	b.WriteByte('(')
	b.WriteString(n.prop.name)
	b.WriteByte(',')
	n.arg.write(b)
	b.WriteByte(')')
}

func (n *propNode) write(b *strings.Builder) { b.WriteString(n.name) }

func (n *literalNode) write(b *strings.Builder) {
	if s, ok := n.v.(string); ok {
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(s, "'", "''"))
		b.WriteByte('\'')
		return
	}
	b.WriteString(n.text)
}

// Filter is a parsed $filter.
type Filter struct {
	Root      Node
	Literals  []string // the string literals, unescaped, in order
	Operators []string // each operator and function used, in order of appearance (eq, or, contains, …)
	Props     []string // the properties referenced
}

// mistyped returns the OData parser's message for the first comparison
// or text function in n that takes a column of a non-text type (types)
// with a string literal, or "". Dataverse refuses such a query with 400
// and code 0x0, before running it: the message is ODataLib's (the code
// is assumed to be the URI parser's 0x0, as for an unknown property).
// A GUID column compared with a quoted GUID is accepted, as Dataverse
// accepts it.
func mistyped(n Node, types map[string]string) string {
	switch x := n.(type) {
	case *notNode:
		return mistyped(x.x, types)
	case *funcNode:
		if t := types[x.prop.name]; t != "" {
			return fmt.Sprintf("No function signature for the function with name '%s' matches the specified arguments. The function signatures considered are: %s(Edm.String Nullable=true, Edm.String Nullable=true).", x.name, x.name)
		}
	case *binaryNode:
		if x.op == "and" || x.op == "or" {
			if m := mistyped(x.l, types); m != "" {
				return m
			}
			return mistyped(x.r, types)
		}
		p, pok := x.l.(*propNode)
		l, lok := x.r.(*literalNode)
		if !pok || !lok {
			p, pok = x.r.(*propNode)
			l, lok = x.l.(*literalNode)
		}
		if !pok || !lok {
			return ""
		}
		if _, isText := l.v.(string); !isText {
			return ""
		}
		t := types[p.name]
		if t == "" || t == "Edm.Guid" {
			return ""
		}
		kinds := map[string]string{"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual"}
		return fmt.Sprintf("A binary operator with incompatible types was detected. Found operand types '%s' and 'Edm.String' for operator kind '%s'.", t, kinds[x.op])
	}
	return ""
}

// ParseFilter parses an OData $filter expression of the subset the
// emulator supports: eq ne gt ge lt le, and or not, parentheses,
// contains/startswith/endswith(property,'text'), string literals with ”
// escapes, numbers, true/false/null and GUIDs. Anything else is an error
// carrying the position, which the server answers with a 400 OData error.
func ParseFilter(s string) (*Filter, error) {
	// A lookup's filter is mostly "column eq 'value'" terms: about one
	// token for every six bytes.
	p := &parser{src: s, toks: make([]token, 0, len(s)/6+4)}
	if err := p.lex(); err != nil {
		return nil, err
	}
	f := &Filter{}
	p.f = f
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, p.errAt(p.toks[p.pos], "unexpected '"+p.toks[p.pos].text+"'")
	}
	f.Root = n
	return f, nil
}

type tokKind int

const (
	tIdent tokKind = iota
	tString
	tNumber
	tGUID
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	text string // raw text; for tString the unescaped value
	at   int
}

type parser struct {
	src  string
	toks []token
	pos  int
	f    *Filter
}

func (p *parser) errAt(t token, msg string) error {
	return fmt.Errorf("syntax error at position %d in '%s': %s", t.at, p.src, msg)
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func looksGUID(s string) bool {
	if len(s) < 36 {
		return false
	}
	s = s[:36]
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func (p *parser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			p.toks = append(p.toks, token{tLParen, "(", i})
			i++
		case c == ')':
			p.toks = append(p.toks, token{tRParen, ")", i})
			i++
		case c == ',':
			p.toks = append(p.toks, token{tComma, ",", i})
			i++
		case c == '\'':
			start := i
			i++
			closed, escaped := false, false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						escaped = true
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				i++
			}
			if !closed {
				return fmt.Errorf("syntax error at position %d in '%s': unterminated string literal", start, s)
			}
			// The value is the source text between the quotes, unless a
			// doubled quote needs unescaping.
			v := s[start+1 : i-1]
			if escaped {
				v = strings.ReplaceAll(v, "''", "'")
			}
			p.toks = append(p.toks, token{tString, v, start})
		case looksGUID(s[i:]) && (len(s) == i+36 || !isIdentByte(s[i+36])):
			p.toks = append(p.toks, token{tGUID, s[i : i+36], i})
			i += 36
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			start := i
			i++
			for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
				i++
			}
			if i < len(s) && isIdentByte(s[i]) {
				return fmt.Errorf("syntax error at position %d in '%s': character '%c' is not valid", i, s, s[i])
			}
			p.toks = append(p.toks, token{tNumber, s[start:i], start})
		case isIdentByte(c) && !(c >= '0' && c <= '9'):
			start := i
			for i < len(s) && (isIdentByte(s[i]) || s[i] == '.') {
				i++
			}
			p.toks = append(p.toks, token{tIdent, s[start:i], start})
		default:
			return fmt.Errorf("syntax error at position %d in '%s': character '%c' is not valid", i, s, c)
		}
	}
	return nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func (p *parser) peekIdent(word string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == tIdent && p.toks[p.pos].text == word
}

func (p *parser) or() (Node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekIdent("or") {
		p.pos++
		p.f.Operators = append(p.f.Operators, "or")
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &binaryNode{op: "or", l: l, r: r}
	}
	return l, nil
}

func (p *parser) and() (Node, error) {
	l, err := p.cmp()
	if err != nil {
		return nil, err
	}
	for p.peekIdent("and") {
		p.pos++
		p.f.Operators = append(p.f.Operators, "and")
		r, err := p.cmp()
		if err != nil {
			return nil, err
		}
		l = &binaryNode{op: "and", l: l, r: r}
	}
	return l, nil
}

var cmpOps = map[string]bool{"eq": true, "ne": true, "gt": true, "ge": true, "lt": true, "le": true}

func (p *parser) cmp() (Node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) && p.toks[p.pos].kind == tIdent && cmpOps[p.toks[p.pos].text] {
		op := p.toks[p.pos].text
		p.pos++
		p.f.Operators = append(p.f.Operators, op)
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &binaryNode{op: op, l: l, r: r}, nil
	}
	return l, nil
}

func (p *parser) unary() (Node, error) {
	if p.peekIdent("not") {
		p.pos++
		p.f.Operators = append(p.f.Operators, "not")
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &notNode{x: x}, nil
	}
	return p.primary()
}

func (p *parser) end() token {
	return token{at: len(p.src)}
}

func (p *parser) primary() (Node, error) {
	if p.pos >= len(p.toks) {
		return nil, p.errAt(p.end(), "expression expected")
	}
	t := p.toks[p.pos]
	p.pos++
	switch t.kind {
	case tLParen:
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].kind != tRParen {
			return nil, p.errAt(p.end(), "')' expected")
		}
		p.pos++
		return n, nil
	case tString:
		p.f.Literals = append(p.f.Literals, t.text)
		return &literalNode{v: t.text}, nil
	case tNumber:
		v, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errAt(t, "bad number")
		}
		return &literalNode{v: v, text: t.text}, nil
	case tGUID:
		return &literalNode{v: guid(strings.ToLower(t.text)), text: t.text}, nil
	case tIdent:
		switch t.text {
		case "true":
			return &literalNode{v: true, text: "true"}, nil
		case "false":
			return &literalNode{v: false, text: "false"}, nil
		case "null":
			return &literalNode{v: nil, text: "null"}, nil
		case "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le":
			return nil, p.errAt(t, "expression expected before '"+t.text+"'")
		}
		if p.pos < len(p.toks) && p.toks[p.pos].kind == tLParen {
			return p.call(t)
		}
		if strings.Contains(t.text, ".") {
			return nil, p.errAt(t, "navigation properties are not supported by the emulator")
		}
		p.f.Props = append(p.f.Props, t.text)
		return &propNode{name: t.text}, nil
	}
	return nil, p.errAt(t, "unexpected '"+t.text+"'")
}

func (p *parser) call(name token) (Node, error) {
	switch name.text {
	case "contains", "startswith", "endswith":
	default:
		return nil, p.errAt(name, "unknown function '"+name.text+"' (the emulator supports contains, startswith, endswith)")
	}
	p.pos++ // (
	p.f.Operators = append(p.f.Operators, name.text)
	if p.pos+3 >= len(p.toks) {
		return nil, p.errAt(name, name.text+" takes (property,'text')")
	}
	a, comma, b := p.toks[p.pos], p.toks[p.pos+1], p.toks[p.pos+2]
	if a.kind != tIdent || comma.kind != tComma || b.kind != tString || p.toks[p.pos+3].kind != tRParen {
		return nil, p.errAt(name, name.text+" takes (property,'text')")
	}
	p.pos += 4
	p.f.Props = append(p.f.Props, a.text)
	p.f.Literals = append(p.f.Literals, b.text)
	return &funcNode{name: name.text, prop: &propNode{name: a.text}, arg: &literalNode{v: b.text}}, nil
}

// evaluation

func (n *propNode) eval(row map[string]any) (any, error) {
	v := row[n.name]
	if s, ok := v.(string); ok && s == "" {
		return nil, nil
	}
	if i, ok := v.(int); ok {
		return float64(i), nil
	}
	return v, nil
}

func (n *literalNode) eval(map[string]any) (any, error) { return n.v, nil }

func (n *notNode) eval(row map[string]any) (any, error) {
	v, err := n.x.eval(row)
	if err != nil {
		return nil, err
	}
	b, ok := v.(bool)
	if !ok {
		return nil, fmt.Errorf("'not' needs a Boolean operand in %s", n.String())
	}
	return !b, nil
}

func (n *funcNode) eval(row map[string]any) (any, error) {
	v, _ := n.prop.eval(row)
	s, _ := v.(string)
	arg := n.arg.v.(string)
	// Dataverse runs these as SQL LIKE, so %, _, [] and [^] in the text
	// are wildcards (learn.microsoft.com/power-apps/developer/data-platform/
	// wildcard-characters: "contains, startswith, endswith" in the Web API),
	// compared in the database's collation (see fold).
	switch n.name {
	case "contains":
		arg = "%" + arg + "%"
	case "startswith":
		arg += "%"
	default:
		arg = "%" + arg
	}
	return like([]rune(fold(s)), []rune(fold(arg))), nil
}

// like reports whether s matches the T-SQL LIKE pattern p: % any run, _
// any one character, [abc] [a-z] one of a set, [^…] one not in it. Both
// are folded (see fold).
func like(s, p []rune) bool {
	for len(p) > 0 {
		switch p[0] {
		case '%':
			for len(p) > 0 && p[0] == '%' {
				p = p[1:]
			}
			if len(p) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if like(s[i:], p) {
					return true
				}
			}
			return false
		case '_':
			if len(s) == 0 {
				return false
			}
		case '[':
			end := -1
			for i := 2; i < len(p); i++ { // "[]" is not a set: ']' right after '[' is a member
				if p[i] == ']' {
					end = i
					break
				}
			}
			if end < 0 {
				// No closing bracket: a literal '['.
				if len(s) == 0 || s[0] != '[' {
					return false
				}
				break
			}
			if len(s) == 0 {
				return false
			}
			set, neg := p[1:end], false
			if len(set) > 0 && set[0] == '^' {
				set, neg = set[1:], true
			}
			in := false
			for i := 0; i < len(set); i++ {
				if i+2 < len(set) && set[i+1] == '-' {
					if set[i] <= s[0] && s[0] <= set[i+2] {
						in = true
					}
					i += 2
				} else if set[i] == s[0] {
					in = true
				}
			}
			if in == neg {
				return false
			}
			s, p = s[1:], p[end+1:]
			continue
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		s, p = s[1:], p[1:]
	}
	return len(s) == 0
}

func (n *binaryNode) eval(row map[string]any) (any, error) {
	l, err := n.l.eval(row)
	if err != nil {
		return nil, err
	}
	r, err := n.r.eval(row)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and", "or":
		lb, ok1 := l.(bool)
		rb, ok2 := r.(bool)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("'%s' needs Boolean operands in %s", n.op, n.String())
		}
		if n.op == "and" {
			return lb && rb, nil
		}
		return lb || rb, nil
	}
	c, comparable := compare(l, r)
	switch n.op {
	case "eq":
		return comparable && c == 0, nil
	case "ne":
		return !comparable || c != 0, nil
	}
	if !comparable || l == nil || r == nil {
		return false, nil
	}
	switch n.op {
	case "gt":
		return c > 0, nil
	case "ge":
		return c >= 0, nil
	case "lt":
		return c < 0, nil
	default:
		return c <= 0, nil
	}
}

// compare orders two values the way Dataverse does for the supported
// types: strings in the collation of an English (US) environment,
// Latin1_General_CI_AI, so case- and accent-insensitively ("cafe" and
// "café" are the same word: learn.microsoft.com/power-platform/admin/
// language-collations, "1033 English (United States) _CI_AI") and, as SQL
// Server pads the shorter string with spaces before comparing (KB 316626),
// ignoring trailing spaces; numbers numerically, GUIDs as text.
func compare(a, b any) (int, bool) {
	if a == nil || b == nil {
		if a == nil && b == nil {
			return 0, true
		}
		return 1, false
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return compareFold(trimPad(x), trimPad(y)), true
		}
	case guid:
		switch y := b.(type) {
		case guid:
			return strings.Compare(string(x), string(y)), true
		case string:
			return strings.Compare(string(x), strings.ToLower(y)), true
		}
	case float64:
		if y, ok := b.(float64); ok {
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	case bool:
		if y, ok := b.(bool); ok {
			if x == y {
				return 0, true
			}
			return 1, true
		}
	}
	if s, ok := a.(string); ok {
		if g, ok := b.(guid); ok {
			return strings.Compare(strings.ToLower(s), string(g)), true
		}
	}
	return 0, false
}

// compareFold is strings.Compare(fold(a), fold(b)) without folding whole
// strings: byte by byte while both are ASCII (each ASCII byte lowers to one
// byte in place), falling back to the folded strings at the first
// non-ASCII byte.
func compareFold(a, b string) int {
	if a == b {
		return 0
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x >= 0x80 || y >= 0x80 {
			return strings.Compare(fold(a), fold(b))
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// fold is s as the CI_AI collation compares it: lower case, without
// accents.
func fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			// Without the combining marks of the canonical decomposition:
			// é, ü, ñ become e, u, n. (A Chain holds state: one per call.)
			unaccent := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
			if u, _, err := transform.String(unaccent, s); err == nil {
				s = u
			}
			break
		}
	}
	return strings.ToLower(s)
}

// trimPad drops trailing spaces (U+0020 only), which SQL Server's =, <, >
// ignore: 'abc' = 'abc  ' (but not LIKE, so not contains & co.).
func trimPad(s string) string { return strings.TrimRight(s, " ") }
