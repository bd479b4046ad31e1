package kerneltest

import "testing"

// TestUnavailableFailsWhenRequired runs Unavailable against a recorder and
// checks that the environment decides between a skip and a failure.
func TestUnavailableFailsWhenRequired(t *testing.T) {
	for _, tc := range []struct {
		env      string
		wantFail bool
	}{{"1", true}, {"", false}, {"0", false}} {
		t.Setenv(RequireEnv, tc.env)
		rec := &recorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			Unavailable(rec, "no reason")
		}()
		if rec.failed != tc.wantFail || rec.skipped == tc.wantFail {
			t.Errorf("%s=%q: failed=%v skipped=%v, want failed=%v", RequireEnv, tc.env, rec.failed, rec.skipped, tc.wantFail)
		}
	}
}

// recorder notes a Fatalf or Skipf instead of ending the test; it panics to
// stop the caller as the real methods would.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic("fatal") }
func (r *recorder) Skipf(string, ...any)  { r.skipped = true; panic("skip") }
