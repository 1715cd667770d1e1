package bridge

// NATS subjects, version 1. Consumers filter with wildcards, e.g.
// screenpop.events.voice.> or screenpop.events.*.*.<agent>.
const (
	SubjectAll        = "screenpop.>"
	SubjectEvents     = "screenpop.events.>"
	SubjectPops       = "screenpop.pops.*"
	subjectEventsBase = "screenpop.events."
	subjectPopsBase   = "screenpop.pops."
)

// ResolverSubjects are the event subjects the resolver consumes: all of
// them, the states that can make a pop and disconnected, which ends a leg's
// marker (see PopEnder).
var ResolverSubjects = []string{SubjectEvents}

// EventSubject is screenpop.events.<media>.<state>.<agentUserId>.
func EventSubject(m Media, s State, agent AgentID) string {
	return subjectEventsBase + string(m) + "." + string(s) + "." + string(agent)
}

// PopSubject is screenpop.pops.<agentUserId>.
func PopSubject(agent AgentID) string { return subjectPopsBase + string(agent) }

// AgentFromPopSubject returns the agent of a pop subject, or "" if subject is
// not one.
func AgentFromPopSubject(subject string) AgentID {
	if len(subject) <= len(subjectPopsBase) || subject[:len(subjectPopsBase)] != subjectPopsBase {
		return ""
	}
	return AgentID(subject[len(subjectPopsBase):])
}
