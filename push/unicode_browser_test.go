package push

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/screenpop/screenpop/bridge"
)

// TestBrowser_ChooserShowsNamesAsWritten: a record's name is text the
// web resource does not control (a lead from a web form, a contact a
// customer portal created). In the chooser each candidate reads "name ·
// entity": whatever the name holds (right-to-left script, emoji,
// combining accents, a right-to-left override U+202E that nothing
// closes), the " · entity" after it still reads left to right after
// the name, so a name cannot dress up as another line or another entity.
func TestBrowser_ChooserShowsNamesAsWritten(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	tok := e.token("agent-bidi")
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready'`))

	names := []string{
		"Ann \u202eLee",                // an override nothing closes
		"\u202etcatnoc \u00b7 eeL nnA", // one that writes another line
		"محمد العتيبي",                 // right-to-left script
		"Zoe\u0308 👩🏽‍💻 Lee",           // combining diaeresis, an emoji sequence
		"Ann\u200b\u2067Lee\u2069 (2)", // zero-width space, an isolate
	}
	p := testPop("agent-bidi", "conv-bidi")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	for i, n := range names {
		p.Candidates = append(p.Candidates, bridge.Candidate{Entity: "contact", ID: fmt.Sprintf("bbbbbbbb-0000-4000-8000-%012d", i), Name: n})
	}
	e.publishPop(p)
	run(t, ctx, poll(fmt.Sprintf(`document.querySelectorAll('button.screenpop-candidate').length === %d`, len(names))))

	// For each candidate: the x of each character of its trailing
	// " · contact", in reading order, as laid out.
	xs := eval[[][]float64](t, ctx, `Array.from(document.querySelectorAll('button.screenpop-candidate')).map(function (b) {
		var suffix = ' \u00b7 ' + b.getAttribute('data-entity');
		var w = document.createTreeWalker(b, NodeFilter.SHOW_TEXT), nodes = [], n;
		while ((n = w.nextNode())) { nodes.push(n); }
		var last = nodes[nodes.length - 1], out = [];
		var start = last.data.length - suffix.length;
		for (var i = start; i < last.data.length; i++) {
			if (last.data[i] === ' ') { continue; }
			var r = document.createRange(); r.setStart(last, i); r.setEnd(last, i + 1);
			out.push(r.getBoundingClientRect().left);
		}
		return out;
	})`)
	for i, row := range xs {
		for j := 1; j < len(row); j++ {
			if row[j] <= row[j-1] {
				t.Errorf("candidate %q: its \" · contact\" is laid out right to left (x %v): the name reorders the line the agent reads", names[i], row)
				break
			}
		}
	}
	texts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('button.screenpop-candidate')).map(function (b) { return b.textContent; })`)
	for i, text := range texts {
		if text != names[i]+" · contact" {
			t.Errorf("candidate %d reads %q, want the name as stored, then its entity", i, text)
		}
	}
}

// TestBrowser_ChooserFitsLongNames: a chooser of ten candidates with long
// names (Dataverse allows 160 characters in a contact's full name), one
// of them a single word, stays on a laptop's screen: every candidate and
// Dismiss can be reached, and no name runs off the screen's edge. The
// chooser is fixed to the viewport, so what falls outside it cannot be
// scrolled to.
func TestBrowser_ChooserFitsLongNames(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	tok := e.token("agent-long")
	run(t, ctx, chromedp.EmulateViewport(1366, 768), chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	p := testPop("agent-long", "conv-long")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	for i := range 10 {
		name := strings.Repeat("Wolfeschlegelsteinhausenbergerdorff ", 5)[:160]
		if i == 9 {
			name = strings.Repeat("Ш", 160)
		}
		p.Candidates = append(p.Candidates, bridge.Candidate{Entity: "contact", ID: fmt.Sprintf("bbbbbbbb-0000-4000-8000-%012d", i), Name: name})
	}
	e.publishPop(p)
	run(t, ctx, poll(`document.querySelectorAll('button.screenpop-candidate').length === 10`))
	type box struct{ Top, Bottom, Left, Right float64 }
	type layout struct {
		Viewport struct{ W, H float64 }
		Reach    []box // each candidate and Dismiss, after scrollIntoView
		Overflow []bool
	}
	l := eval[layout](t, ctx, `(function () {
		var out = { viewport: { w: innerWidth, h: innerHeight }, reach: [], overflow: [] };
		var bs = document.querySelectorAll('.screenpop-chooser button');
		bs.forEach(function (b) {
			b.scrollIntoView({ block: 'nearest' });
			var r = b.getBoundingClientRect();
			out.reach.push({ top: r.top, bottom: r.bottom, left: r.left, right: r.right });
			out.overflow.push(b.scrollWidth > b.clientWidth + 1);
		});
		return out;
	})()`)
	for i, r := range l.Reach {
		if r.Top < 0 || r.Bottom > l.Viewport.H || r.Left < 0 || r.Right > l.Viewport.W {
			t.Errorf("button %d of the chooser at %+v cannot be brought into the %vx%v viewport", i, r, l.Viewport.W, l.Viewport.H)
		}
		if l.Overflow[i] {
			t.Errorf("button %d: its text runs past its edge", i)
		}
	}
}
