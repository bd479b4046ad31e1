// Package e2e holds tests of the shipper against real peers: statsd_exporter's
// line parser reads every datagram the fuzz test packs, and the shipping
// benchmark races bpfstatd against datadog-go to a loopback receiver that
// parses and counts what arrived. It is a separate module so that the peers
// stay out of bpfstatd's own dependencies.
package e2e
