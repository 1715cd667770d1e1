package notifications

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mypurecloud/platform-client-sdk-go/v157/platformclientv2"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/internal/egress"
)

// ProbeStep is one step of Probe: one line of `screenpopd check`.
type ProbeStep struct {
	Name    string // e.g. "genesys login"
	Detail  string // what the step found, or (Skipped) why it did not run
	Err     error  // why the step failed; nil when it passed or was skipped
	Fix     string // with Err: what to change
	Skipped bool   // not run: a step it needs failed
}

// conversationTopic is the template of the topic Run subscribes per agent.
const conversationTopic = topicPrefix + "{id}" + topicSuffix

// probeTokenGen marks the probe's token: it comes from no auth loop, so a
// 401 is reported at once instead of waiting for a refresh.
const probeTokenGen = -1

// Probe proves, step by step, what Run needs of Genesys Cloud and
// reports each step, in a fixed order, to report:
//
//   - genesys region: the region (or GENESYS_API_URL) maps to API and login hosts;
//   - genesys login: a client-credentials token, accepted by GET /api/v2/tokens/me;
//   - genesys channel: a notification channel is created and its websocket opens;
//   - genesys subscribe: the probe agent's presence topic is subscribed on
//     that channel and the channel's subscriptions removed again;
//   - genesys permissions: the conversation topic's required permissions,
//     read from the available-topics API;
//   - genesys queue <id>: each queue's members (first page);
//   - genesys reconciliation: the activity query for the probe agent.
//
// The probe agent is the first of cfg.Agents, else the first member of
// the first queue that has one. The conversation topic is never
// subscribed: a topic subscribed on a second channel of the same OAuth
// client may be taken from the first, and the presence topic is one a
// running daemon does not use, so Probe may run next to one. A channel
// cannot be deleted: the probe's channel, left without topics, expires
// unused. Neither the secret nor a token appears in any step.
func Probe(ctx context.Context, cfg Config, log zerolog.Logger, report func(ProbeStep)) {
	p := &prober{report: report, later: []string{"genesys login", "genesys channel", "genesys subscribe", "genesys permissions"}}
	for _, q := range cfg.Queues {
		p.later = append(p.later, "genesys queue "+q)
	}
	p.later = append(p.later, "genesys reconciliation")

	hosts, err := RegionHosts(cfg.Region, cfg.APIURL)
	if err != nil {
		p.fail("genesys region", err, "set GENESYS_REGION to the domain of your Genesys Cloud login URL (e.g. mypurecloud.ie for https://login.mypurecloud.ie)")
		p.skipFrom(0, "needs genesys region")
		return
	}
	p.ok("genesys region", "API %s, login %s", hosts.API, hosts.Login)

	cfg.Registerer = nil // a probe's counts are nobody's metrics
	c, err := New(cfg, log, make(chan bridge.Snapshot))
	if err != nil {
		p.fail("genesys login", err, "check GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET and GENESYS_AGENTS / GENESYS_QUEUES")
		p.skipFrom(1, "needs genesys login")
		return
	}
	c.doer.setContext(ctx)
	defer c.doer.hc.CloseIdleConnections()
	p.c = c
	p.run(ctx)
}

type prober struct {
	c      *Client
	report func(ProbeStep)
	later  []string // the steps after genesys region, in order
}

func (p *prober) ok(name, format string, a ...any) {
	p.report(ProbeStep{Name: name, Detail: fmt.Sprintf(format, a...)})
}

func (p *prober) fail(name string, err error, fix string) {
	p.report(ProbeStep{Name: name, Err: err, Fix: fix})
}

func (p *prober) skip(name, why string) {
	p.report(ProbeStep{Name: name, Detail: why, Skipped: true})
}

func (p *prober) skipFrom(i int, why string) {
	for _, n := range p.later[i:] {
		p.skip(n, why)
	}
}

type queueProbe struct {
	members string // "3" or "at least 100"
	first   string
	err     error
}

func (p *prober) run(ctx context.Context) {
	c := p.c
	if err := c.probeLogin(); err != nil {
		p.fail("genesys login", err, loginFix(err))
		p.skipFrom(1, "needs genesys login")
		return
	}
	var ti *platformclientv2.Tokeninfo
	tokens := platformclientv2.NewTokensApiWithConfig(c.api)
	if err := c.call(ctx, "tokens/me", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		ti, resp, err = tokens.GetTokensMe(false)
		return resp, err
	}); err != nil {
		p.fail("genesys login", err, "the API refused a token its login host just issued: GENESYS_API_URL and the region must belong together")
		p.skipFrom(1, "needs genesys login")
		return
	}
	var clientName, orgName string
	if ti != nil && ti.OAuthClient != nil && ti.OAuthClient.Name != nil {
		clientName = *ti.OAuthClient.Name
	}
	if ti != nil && ti.Organization != nil && ti.Organization.Name != nil {
		orgName = *ti.Organization.Name
	}
	p.ok("genesys login", "token for client %s (%q) of org %q", c.cfg.ClientID, clientName, orgName)

	queues := map[string]queueProbe{}
	for _, q := range c.cfg.Queues {
		queues[q] = c.probeQueue(ctx, q)
	}
	probe := ""
	if len(c.cfg.Agents) > 0 {
		probe = c.cfg.Agents[0]
	} else {
		for _, q := range c.cfg.Queues {
			if qp := queues[q]; qp.err == nil && qp.first != "" {
				probe = qp.first
				break
			}
		}
	}

	// Channel and socket.
	var ch *platformclientv2.Channel
	err := c.call(ctx, "create channel", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		ch, resp, err = c.notif.PostNotificationsChannels()
		return resp, err
	})
	var chID, uri string
	if err == nil {
		if ch == nil || ch.Id == nil {
			err = errors.New("create channel: the answer has no channel id")
		} else {
			chID = *ch.Id
			if ch.ConnectUri != nil {
				uri = *ch.ConnectUri
			}
		}
	}
	switch {
	case err != nil:
		p.fail("genesys channel", err, orUnavailable(err, "the OAuth client must be allowed the notifications API: give its role the permissions below, and check it has no scope restriction excluding notifications"))
		p.skip("genesys subscribe", "needs genesys channel")
	default:
		if err := openSocket(ctx, uri); err != nil {
			streaming := c.hosts.Streaming[strings.Index(c.hosts.Streaming, "://")+3:]
			p.fail("genesys channel", fmt.Errorf("channel %s created, but its websocket did not open: %w", channelRef(chID), err),
				"allow outbound websockets (wss, port 443) from this host to "+streaming+"; a proxy must pass the Upgrade header")
			p.skip("genesys subscribe", "needs genesys channel")
			break
		}
		p.ok("genesys channel", "channel %s created and its websocket opened", channelRef(chID))
		if probe == "" {
			p.skip("genesys subscribe", "no agent to probe with (GENESYS_AGENTS empty and no queue has members)")
		} else {
			p.subscribe(ctx, chID, probe)
		}
	}

	p.permissions(ctx)

	for _, q := range c.cfg.Queues {
		qp := queues[q]
		if qp.err != nil {
			fix := "check GENESYS_QUEUES holds queue ids (Admin > Contact Center > Queues, the id in the URL)"
			if status(qp.err) == http.StatusForbidden {
				fix = "give the OAuth client's role Routing > Queue > View (routing:queue:view)"
			}
			p.fail("genesys queue "+q, qp.err, orUnavailable(qp.err, fix))
			continue
		}
		if qp.first == "" {
			p.fail("genesys queue "+q, errors.New("the queue has no members"), "add the agents to the queue (Admin > Contact Center > Queues > Members), or remove it from GENESYS_QUEUES")
			continue
		}
		p.ok("genesys queue "+q, "%s members", qp.members)
	}

	if probe == "" {
		p.skip("genesys reconciliation", "no agent to probe with")
		return
	}
	live, _, err := c.activity(ctx, []string{probe}, liveMetrics...)
	if err != nil {
		p.fail("genesys reconciliation", err, orUnavailable(err, "give the OAuth client's role Analytics > Queue Observation > View (analytics:queueObservation:view); without it calls that alert during a reconnect do not pop"))
		return
	}
	p.ok("genesys reconciliation", "activity query answered for user %s (%d live conversations)", probe, len(live))
}

// probeLogin obtains one token with the client credentials and installs
// it for the probe's calls. Its errors name the login host and, for an
// answer, the status and OAuth error code; never the secret.
func (c *Client) probeLogin() error {
	start := time.Now()
	if err := sdkLogin(c.loginCfg, c.cfg.ClientID, c.cfg.ClientSecret); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("cannot reach %s: %w", c.hosts.Login, ue.Err)
		}
		if m := authStatusRE.FindStringSubmatch(err.Error()); m != nil {
			st, _ := strconv.Atoi(m[1])
			return &APIError{Op: "login " + c.hosts.Login, Status: st, Code: m[2]}
		}
		return fmt.Errorf("login %s: %s", c.hosts.Login, sanitize(err.Error()))
	}
	life := time.Duration(c.loginCfg.AccessTokenExpiresIn) * time.Second
	if life <= 0 {
		life = time.Hour
	}
	c.tokMu.Lock()
	c.tok.Store(&tokenState{value: c.loginCfg.AccessToken, expires: start.Add(life), gen: probeTokenGen})
	c.tokMu.Unlock()
	return nil
}

func loginFix(err error) string {
	var ae *APIError
	if !errors.As(err, &ae) {
		return "check GENESYS_REGION and that this host reaches login.<region> over HTTPS (DNS, proxy, firewall)"
	}
	switch {
	case ae.Code == "invalid_client" || ae.Status == http.StatusUnauthorized:
		return "check GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET (Admin > Integrations > OAuth, a Client Credentials client); a client of another region's org is also rejected, so check GENESYS_REGION"
	case ae.Code == "unauthorized_client" || ae.Code == "unsupported_grant_type":
		return "the OAuth client's grant type must be Client Credentials (the browser's PKCE client cannot be used here)"
	case ae.Status == http.StatusTooManyRequests || ae.Status >= 500:
		return unavailableFix
	}
	return "check GENESYS_REGION, GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"
}

// unavailableFix is the fix of a step Genesys Cloud answered with 429 or
// 5xx: it is down or throttling, and nothing in the configuration is wrong.
const unavailableFix = "Genesys Cloud is unavailable or throttling; try again later (status.mypurecloud.com)"

// orUnavailable is fix, or unavailableFix when err is Genesys Cloud's 429
// or 5xx: a role, topic or queue id fix would send the admin to change a
// configuration that is right.
func orUnavailable(err error, fix string) string {
	if s := status(err); s == http.StatusTooManyRequests || s >= 500 {
		return unavailableFix
	}
	return fix
}

// openSocket dials a channel's websocket and closes it at once.
func openSocket(ctx context.Context, uri string) error {
	if uri == "" {
		return errors.New("the channel has no connectUri")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, resp, err := proxiedDialer(uri).DialContext(ctx, uri, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp == nil {
			err = egress.DialError(dialer.Proxy, uri, err)
		}
		return err
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "screenpopd check"), time.Now().Add(time.Second))
	return ws.Close()
}

// subscribe subscribes user's presence topic on the probe's channel and
// removes the channel's subscriptions again, whatever happened.
func (p *prober) subscribe(ctx context.Context, channel, user string) {
	c := p.c
	topic := "v2.users." + user + ".presence"
	var listing *platformclientv2.Channeltopicentitylisting
	err := c.call(ctx, "subscribe", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		listing, resp, err = c.notif.PutNotificationsChannelSubscriptions(channel, []platformclientv2.Channeltopic{{Id: &topic}}, true)
		return resp, err
	})
	if err == nil && listing != nil && listing.Entities != nil {
		for _, e := range *listing.Entities {
			if e.State != nil && strings.EqualFold(*e.State, "Rejected") {
				id, reason := topic, ""
				if e.Id != nil {
					id = *e.Id
				}
				if e.RejectionReason != nil {
					reason = *e.RejectionReason
				}
				err = fmt.Errorf("genesys rejected %s: %s", id, reason)
			}
		}
	}
	// Clean up whatever happened: the channel keeps no topic.
	cerr := c.call(ctx, "remove subscriptions", func() (*platformclientv2.APIResponse, error) {
		return c.notif.DeleteNotificationsChannelSubscriptions(channel)
	})
	switch {
	case err != nil:
		fix := "give the OAuth client's role the permissions of the 'genesys permissions' line in the division of user " + user + "; check that GENESYS_AGENTS holds user ids of this org"
		if status(err) == http.StatusBadRequest {
			fix = "user id " + user + " makes an invalid topic: GENESYS_AGENTS must hold Genesys user ids (UUIDs)"
		}
		p.fail("genesys subscribe", err, orUnavailable(err, fix))
	case cerr != nil:
		p.fail("genesys subscribe", fmt.Errorf("%s subscribed, but removing it failed: %w", topic, cerr), "the check channel keeps one presence topic until it expires (24 h); harmless, but report it")
	default:
		p.ok("genesys subscribe", "%s subscribed on the check channel and removed again (the daemon's topics are untouched)", topic)
	}
}

// permissions reads the conversation topic's required permissions.
func (p *prober) permissions(ctx context.Context) {
	c := p.c
	var topics *platformclientv2.Availabletopicentitylisting
	if err := c.call(ctx, "available topics", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		topics, resp, err = c.notif.GetNotificationsAvailabletopics([]string{"requiresPermissions", "enforced"}, false)
		return resp, err
	}); err != nil {
		p.fail("genesys permissions", err, orUnavailable(err, "the OAuth client must be allowed to read GET /api/v2/notifications/availabletopics"))
		return
	}
	if topics != nil && topics.Entities != nil {
		for _, t := range *topics.Entities {
			if t.Id == nil || *t.Id != conversationTopic {
				continue
			}
			perms := "no permission"
			if t.RequiresPermissions != nil && len(*t.RequiresPermissions) > 0 {
				perms = strings.Join(*t.RequiresPermissions, ", ")
				if t.Enforced != nil && *t.Enforced {
					perms += " (enforced)"
				}
			}
			p.ok("genesys permissions", "%s requires %s: the OAuth client's role needs it in every watched agent's division (a missing one shows as a rejected topic in the daemon's log and /status)", conversationTopic, perms)
			return
		}
	}
	p.fail("genesys permissions", fmt.Errorf("the available-topics API does not list %s", conversationTopic), "this Genesys Cloud org does not offer the topic screenpop needs; contact Genesys support")
}

// probeQueue reads the first page of a queue's members.
func (c *Client) probeQueue(ctx context.Context, queue string) queueProbe {
	var (
		ids  []string
		more bool
	)
	if err := c.call(ctx, "queue members", func() (*platformclientv2.APIResponse, error) {
		var resp *platformclientv2.APIResponse
		var err error
		ids, more, resp, err = c.queuePage(queue, 1)
		return resp, err
	}); err != nil {
		return queueProbe{err: err}
	}
	qp := queueProbe{members: strconv.Itoa(len(ids))}
	if more {
		qp.members = "at least " + qp.members
	}
	if len(ids) > 0 {
		qp.first = ids[0]
	}
	return qp
}
