package bridge

import "time"

// RememberConversation records that conv popped here at at, as a pop of
// one of its legs does: for tests standing for a busy centre's other
// calls without running their pops.
func (r *Resolver) RememberConversation(conv ConversationID, at time.Time) {
	r.mu.Lock()
	r.convs.put(conv, at)
	r.mu.Unlock()
}

// PhoneCacheBytes is the bytes of raw addresses the phone cache keeps.
func (n *Normalizer) PhoneCacheBytes() (b int) {
	n.phoneMu.Lock()
	defer n.phoneMu.Unlock()
	for _, m := range []map[string]string{n.phones, n.oldPhones} {
		for k := range m {
			b += len(k)
		}
	}
	return b
}
