package bridge

import (
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// The snapshot scanner. A Genesys conversation snapshot is 2-10 KB of JSON of
// which the normalizer needs a few dozen strings, so instead of decoding it
// into structs it walks the document once with gjson and keeps substrings of
// the body (no copies, no allocations on the common path). Everything that
// outlives Normalize (map keys, events) is cloned.

// commView is one communication of a participant (an entry of calls[],
// callbacks[], chats[], messages[] or emails[]).
type commView struct {
	media            Media
	id               string
	state            string
	initialState     string
	direction        string
	connectedTime    string
	disconnectedTime string
	selfAddr         string // calls: self.addressNormalized
	otherAddr        string // calls: other.addressNormalized
	fromAddr         string // messages: fromAddress.addressNormalized
	fromName         string // messages: fromAddress.nameRaw
	toAddr           string // messages: toAddress.addressNormalized
	toName           string // messages: toAddress.nameRaw
	msgType          string // messages: type (sms, whatsapp, twitter, open, ...)
	callbackNumber   string // callbacks: callbackNumbers[0]
	callbackName     string // callbacks: callbackUserName
}

// partView is one participant.
type partView struct {
	id           string
	userID       string
	purpose      string
	name         string
	address      string
	queueID      string
	routingQueue string // conversationRoutingData.queue.id
	endTime      string
	attrs        gjson.Result    // the attributes object, decoded only when an event needs it
	media        [5]gjson.Result // the media arrays, by mediaIndex; scanned only for the participants that matter
	comms        []commView
	otherMedia   bool // has a media array screenpop does not map (videos, cobrowse, ...)
	listener     bool // a supervisor monitoring, coaching or barging in on another participant: nothing is offered to it
}

// snapView is one parsed snapshot. It is reused through a pool.
type snapView struct {
	conversationID string
	parts          []partView
	cands          []candidate // Normalize's candidates, kept for their capacity
}

func (v *snapView) reset() {
	v.conversationID = ""
	for i := range v.parts {
		v.parts[i].comms = v.parts[i].comms[:0]
	}
	v.parts = v.parts[:0]
	v.cands = v.cands[:0]
}

// bytesString views b as a string without copying. b must not change while
// the string is in use: Normalize documents that Snapshot.Body is read-only.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// mediaOrder is the index of each media in partView.media (the order of
// the events is legOrder's).
var mediaOrder = [5]Media{MediaVoice, MediaCallback, MediaChat, MediaMessage, MediaEmail}

// mediaIndex maps a participant's media array key to its index in
// mediaOrder, or -1.
func mediaIndex(key string) int {
	switch key {
	case "calls":
		return 0
	case "callbacks":
		return 1
	case "chats":
		return 2
	case "messages":
		return 3
	case "emails":
		return 4
	}
	return -1
}

// otherMediaKey reports whether key is a media array of the topic schema that
// version 1 does not map.
func otherMediaKey(key string) bool {
	switch key {
	case "cobrowsesessions", "cobrowseSessions", "screenshares", "socialExpressions", "videos", "internalMessages":
		return true
	}
	return false
}

// str returns r's string value, or "" for anything that is not a string
// (null, numbers, objects): a missing or mistyped field reads as absent.
func str(r gjson.Result) string {
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}

// parseSnapshot fills v from body, which must be valid JSON. The
// communications are read only for agent's participants and the customer
// or external ones: the others (IVR, ACD, flows) need only their purpose and
// queue.
func parseSnapshot(body string, agent string, v *snapView) {
	root := gjson.Parse(body)
	if !root.IsObject() {
		return
	}
	root.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "id":
			v.conversationID = str(val)
		case "participants":
			if val.IsArray() {
				val.ForEach(func(_, p gjson.Result) bool {
					if p.IsObject() {
						v.parts = appendPart(v.parts)
						parsePart(p, agent, &v.parts[len(v.parts)-1])
					}
					return true
				})
			}
		}
		return true
	})
}

// appendPart grows parts by one, reusing the element's comms slice.
func appendPart(parts []partView) []partView {
	if len(parts) < cap(parts) {
		parts = parts[:len(parts)+1]
		comms := parts[len(parts)-1].comms[:0]
		parts[len(parts)-1] = partView{comms: comms}
		return parts
	}
	return append(parts, partView{})
}

func parsePart(p gjson.Result, agent string, pv *partView) {
	p.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "id":
			pv.id = str(val)
		case "userId":
			pv.userID = str(val)
		case "purpose":
			pv.purpose = str(val)
		case "name":
			pv.name = str(val)
		case "address":
			pv.address = str(val)
		case "queueId":
			pv.queueID = str(val)
		case "endTime":
			pv.endTime = str(val)
		case "attributes":
			if val.IsObject() {
				pv.attrs = val
			}
		case "monitoredParticipantId", "coachedParticipantId", "bargedParticipantId":
			if str(val) != "" {
				pv.listener = true
			}
		case "conversationRoutingData":
			if val.IsObject() {
				pv.routingQueue = str(val.Get("queue.id"))
			}
		default:
			if i := mediaIndex(k.Str); i >= 0 {
				if val.IsArray() {
					pv.media[i] = val
				}
			} else if otherMediaKey(k.Str) && val.IsArray() && len(val.Raw) > 2 {
				pv.otherMedia = true
			}
		}
		return true
	})
	if pv.userID != agent && !customerPurpose(pv.purpose) {
		return
	}
	for i, arr := range pv.media {
		if !arr.Exists() {
			continue
		}
		m := mediaOrder[i]
		arr.ForEach(func(_, c gjson.Result) bool {
			if c.IsObject() {
				pv.comms = append(pv.comms, commView{media: m})
				parseComm(c, &pv.comms[len(pv.comms)-1])
			}
			return true
		})
	}
}

// customerPurpose reports whether a participant's purpose makes it the
// customer side of the conversation.
func customerPurpose(p string) bool {
	return strings.EqualFold(p, "customer") || strings.EqualFold(p, "external")
}

func parseComm(c gjson.Result, cv *commView) {
	c.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "id":
			cv.id = str(val)
		case "state":
			cv.state = str(val)
		case "initialState":
			cv.initialState = str(val)
		case "direction":
			cv.direction = str(val)
		case "connectedTime":
			cv.connectedTime = str(val)
		case "disconnectedTime":
			cv.disconnectedTime = str(val)
		case "self":
			cv.selfAddr = addressOf(val)
		case "other":
			cv.otherAddr = addressOf(val)
		case "fromAddress":
			cv.fromAddr, cv.fromName = addressOf(val), nameOf(val)
		case "toAddress":
			cv.toAddr, cv.toName = addressOf(val), nameOf(val)
		case "type":
			cv.msgType = str(val)
		case "callbackNumbers":
			if val.IsArray() {
				val.ForEach(func(_, n gjson.Result) bool {
					cv.callbackNumber = str(n)
					return cv.callbackNumber == ""
				})
			}
		case "callbackUserName":
			cv.callbackName = str(val)
		}
		return true
	})
}

// nameOf reads a Conversationeventtopicaddress's display name: nameRaw,
// else name.
func nameOf(a gjson.Result) string {
	if !a.IsObject() {
		return ""
	}
	if n := str(a.Get("nameRaw")); n != "" {
		return n
	}
	return str(a.Get("name"))
}

// addressOf reads a Conversationeventtopicaddress: addressNormalized, else
// addressRaw.
func addressOf(a gjson.Result) string {
	if !a.IsObject() {
		return ""
	}
	var norm, raw string
	a.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "addressNormalized":
			norm = str(val)
		case "addressRaw":
			raw = str(val)
		}
		return true
	})
	if norm != "" {
		return norm
	}
	return raw
}

// agentFromTopic returns the user id of a v2.users.<id>.conversations topic.
func agentFromTopic(topic string) AgentID {
	const prefix = "v2.users."
	if !strings.HasPrefix(topic, prefix) {
		return ""
	}
	rest := topic[len(prefix):]
	i := strings.IndexByte(rest, '.')
	if i <= 0 || !strings.HasPrefix(rest[i:], ".conversations") {
		return ""
	}
	return AgentID(rest[:i])
}
