package notificationstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// SetQueueMembers replaces a queue's members.
func (e *Emulator) SetQueueMembers(queueID string, userIDs []string) {
	e.mu.Lock()
	e.queues[queueID] = append([]string(nil), userIDs...)
	e.mu.Unlock()
}

// DeleteQueue removes a queue: GET …/routing/queues/{id}/members answers
// 404 not.found from now on, as the API does for a deleted queue.
// SetQueueMembers creates it again.
func (e *Emulator) DeleteQueue(queueID string) {
	e.mu.Lock()
	delete(e.queues, queueID)
	delete(e.unjoined, queueID)
	e.mu.Unlock()
}

// GarbleQueueMembers makes every page of a queue's members answer 200
// with its body cut in half (as a proxy that truncates a response, framed
// as complete), until called again with on=false.
func (e *Emulator) GarbleQueueMembers(queueID string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.garbledQueues[queueID] = true
	} else {
		delete(e.garbledQueues, queueID)
	}
}

// SetQueueMemberJoined sets whether a member of a queue is joined to it
// (members are joined unless set otherwise). The real API filters on it:
// GET …/members?joined=false lists only the members who are not joined.
func (e *Emulator) SetQueueMemberJoined(queueID, userID string, joined bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unjoined[queueID] == nil {
		e.unjoined[queueID] = map[string]bool{}
	}
	e.unjoined[queueID][userID] = !joined
}

func (e *Emulator) handleQueueMembers(w http.ResponseWriter, r *http.Request, t *token) {
	q := r.URL.Query()
	// joined is a filter ("Filter by joined status"), not a view option:
	// joined=false answers only the members who are not joined.
	var wantJoined *bool
	if v := q.Get("joined"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad.request", "Invalid value for joined", nil)
			return
		}
		wantJoined = &b
	}
	size, _ := strconv.Atoi(q.Get("pageSize"))
	if size <= 0 {
		size = 25
	}
	if size > 100 { // swagger: "Max value is 100"
		writeError(w, http.StatusBadRequest, "bad.request", "pageSize must be at most 100", nil)
		return
	}
	page, _ := strconv.Atoi(q.Get("pageNumber"))
	if page <= 0 {
		page = 1
	}
	e.mu.Lock()
	all, ok := e.queues[r.PathValue("id")]
	var members []string
	for _, id := range all {
		if wantJoined == nil || *wantJoined == !e.unjoined[r.PathValue("id")][id] {
			members = append(members, id)
		}
	}
	ents := []map[string]any{}
	for i := (page - 1) * size; ok && i < len(members) && i < page*size; i++ {
		id := members[i]
		name := e.agents[id].Name
		ents = append(ents, map[string]any{"id": id, "name": name, "user": map[string]any{"id": id, "name": name, "selfUri": "/api/v2/users/" + id},
			"ringNumber": 1, "joined": !e.unjoined[r.PathValue("id")][id], "memberBy": "user", "selfUri": "/api/v2/users/" + id})
	}
	total := len(members)
	garbled := e.garbledQueues[r.PathValue("id")]
	e.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not.found", "The requested queue could not be found.", nil)
		return
	}
	self := r.URL.Path + "?pageSize=" + strconv.Itoa(size) + "&pageNumber="
	res := map[string]any{"entities": ents, "pageSize": size, "pageNumber": page, "selfUri": self + strconv.Itoa(page), "firstUri": self + "1"}
	if page*size < total {
		res["nextUri"] = self + strconv.Itoa(page+1)
	}
	if page > 1 {
		res["previousUri"] = self + strconv.Itoa(page-1)
	}
	if garbled {
		b, _ := json.Marshal(res) // entities first, the page links after them
		writeRaw(w, http.StatusOK, b[:len(b)/2])
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type activityQuery struct {
	Metrics []struct {
		Metric  string `json:"metric"`
		Details bool   `json:"details"`
	} `json:"metrics"`
	GroupBy []string `json:"groupBy"`
	Filter  *struct {
		Type       string          `json:"type"`
		Predicates []activityPred  `json:"predicates"`
		Clauses    []activityClaus `json:"clauses"`
	} `json:"filter"`
}

type activityPred struct {
	Dimension string `json:"dimension"`
	Value     string `json:"value"`
}

type activityClaus struct {
	Type       string         `json:"type"`
	Predicates []activityPred `json:"predicates"`
}

// handleActivityQuery serves POST /api/v2/analytics/conversations/activity/query
// for filters on userId (and queueId): live conversations per user, with
// the oAlerting / oInteracting observations and their details.
func (e *Emulator) handleActivityQuery(w http.ResponseWriter, r *http.Request, t *token) {
	var q activityQuery
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&q); err != nil || len(q.Metrics) == 0 {
		writeError(w, http.StatusBadRequest, "bad.request", "The request could not be understood by the server due to malformed syntax.", nil)
		return
	}
	users := map[string]bool{}
	if q.Filter != nil {
		preds := append([]activityPred(nil), q.Filter.Predicates...)
		for _, c := range q.Filter.Clauses {
			preds = append(preds, c.Predicates...)
		}
		for _, p := range preds {
			if p.Dimension == "userId" {
				users[p.Value] = true
			}
		}
	}
	if len(users) == 0 {
		writeError(w, http.StatusBadRequest, "bad.request", "The activity query needs a userId filter in the emulator.", nil)
		return
	}
	type ent struct {
		ActivityDate   string `json:"activityDate"`
		Metric         string `json:"metric"`
		ConversationID string `json:"conversationId"`
		UserID         string `json:"userId"`
		MediaType      string `json:"mediaType"`
		Direction      string `json:"direction,omitempty"`
		QueueID        string `json:"queueId,omitempty"`
	}
	type result struct {
		Group     map[string]string `json:"group"`
		Data      []map[string]any  `json:"data"`
		Truncated bool              `json:"truncated,omitempty"`
		Entities  []ent             `json:"entities,omitempty"`
	}
	metrics := map[string]bool{}
	for _, m := range q.Metrics {
		metrics[m.Metric] = true
	}
	byUser := map[string]*result{}
	e.mu.Lock()
	convs := make([]*Conversation, 0, len(e.convOrder))
	for _, id := range e.convOrder {
		convs = append(convs, e.convs[id])
	}
	e.mu.Unlock()
	for _, c := range convs {
		c.mu.Lock()
		for u := range users {
			p, ok := c.live(u)
			if !ok {
				continue
			}
			metric := "oInteracting"
			if p.c.state == "alerting" {
				metric = "oAlerting"
			}
			if !metrics[metric] {
				continue
			}
			media := map[string]string{MediaCall: "voice", MediaCallback: "callback", MediaChat: "chat", MediaMessage: "message", MediaEmail: "email"}[c.media]
			res := byUser[u]
			if res == nil {
				res = &result{Group: map[string]string{"userId": u}}
				byUser[u] = res
			}
			res.Entities = append(res.Entities, ent{ActivityDate: fmtTime(c.start), Metric: metric, ConversationID: c.id, UserID: u, MediaType: media, Direction: p.c.direction, QueueID: p.queueID})
		}
		c.mu.Unlock()
	}
	results := []*result{}
	for _, res := range byUser {
		counts := map[string]int{}
		for _, x := range res.Entities {
			counts[x.Metric]++
		}
		for m, n := range counts {
			res.Data = append(res.Data, map[string]any{"metric": m, "count": n})
		}
		if n := e.cfg.ActivityEntityLimit; n > 0 && len(res.Entities) > n {
			// Oldest first (convOrder is creation order): keep the
			// oldest half and the newest half.
			keep := append(res.Entities[:n-n/2:n-n/2], res.Entities[len(res.Entities)-n/2:]...)
			res.Entities, res.Truncated = keep, true
		}
		results = append(results, res)
	}
	// Pages of groups, in user id order. How many groups a page holds
	// when the query gives no pageSize is not documented: the emulator
	// pages at 25 then, so a client that leaves it to the default and reads
	// one page misses agents here as it could on a real org.
	slices.SortFunc(results, func(a, b *result) int { return strings.Compare(a.Group["userId"], b.Group["userId"]) })
	size, number := activityDefaultPageSize, 1
	if v := r.URL.Query().Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > activityMaxPageSize {
			writeError(w, http.StatusBadRequest, "bad.request", fmt.Sprintf("pageSize must be between 1 and %d.", activityMaxPageSize), nil)
			return
		}
		size = n
	}
	if v := r.URL.Query().Get("pageNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "bad.request", "pageNumber must be 1 or more.", nil)
			return
		}
		number = n
	}
	from := min((number-1)*size, len(results))
	results = results[from:min(from+size, len(results))]
	writeJSON(w, http.StatusOK, map[string]any{"results": results, "entityIdDimension": "conversationId"})
}

// The activity query's page sizes: the emulator's default (the real one
// is not documented) and the largest the API takes.
const (
	activityDefaultPageSize = 25
	activityMaxPageSize     = 500
)

func (e *Emulator) handleGetConversation(w http.ResponseWriter, r *http.Request, t *token) {
	c := e.Conversation(r.PathValue("id"))
	if c == nil {
		writeError(w, http.StatusNotFound, "not.found", "The requested conversation could not be found.", nil)
		return
	}
	b := c.RESTBody()
	e.mu.Lock()
	garbled := e.garbled[c.ID()]
	e.mu.Unlock()
	if garbled {
		b = b[:len(b)/2]
	}
	writeRaw(w, http.StatusOK, b)
}
