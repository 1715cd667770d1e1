package bus

import "testing"

// SCREENPOP_NATS_LISTEN's port is read as the configuration checks it and
// as the agent and admin listeners take theirs: a number or a service
// name. The server read it with strconv.Atoi, so a name the check passed
// failed at the start, after the data directory was made.
func TestListenPort(t *testing.T) {
	for port, want := range map[string]int{"4222": 4222, "0": 0, "https": 443, "http": 80} {
		if got, err := listenPort(port); err != nil || got != want {
			t.Errorf("listenPort(%q) = %d, %v; want %d", port, got, err, want)
		}
	}
	for _, port := range []string{"99999", "-1", "nosuchservice"} {
		if got, err := listenPort(port); err == nil {
			t.Errorf("listenPort(%q) = %d, want an error", port, got)
		}
	}
}
