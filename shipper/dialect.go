package shipper

import (
	"fmt"
	"strings"
)

// Dialect is the flavour of StatsD a receiver speaks. Each dialect writes
// only what its receiver parses as meant (see the package documentation).
// The zero value is [DogStatsD].
type Dialect uint8

// Dialects.
const (
	// DogStatsD is the Datadog agent's protocol: tags as "|#k:v,k:v", types
	// c, g, h, d and ms, several values per line as "v1:v2|d".
	DogStatsD Dialect = iota
	// StatsD is Etsy's statsd: no tags, histograms and distributions as
	// timers (it counts "h" and "d" as counters), several values per line as
	// "v1|ms:v2|ms", and a negative gauge preceded by "name:0|g", since
	// a signed gauge value is a change, not a value.
	StatsD
	// StatsdExporter is Prometheus' statsd_exporter: DogStatsD tags, no bare
	// tags, sets, container or cardinality fields; a negative gauge is
	// preceded by "name:0|g" as for StatsD; a negative counter sum, which a
	// Prometheus counter cannot take, is not sent but counted as rejected.
	StatsdExporter
	// Telegraf is Telegraf's statsd input without datadog_extensions: tags
	// in the name as "name,k=v,k=v", distributions as "h", several values per
	// line as "v1|h:v2|h", negative gauges preceded by "name:0|g".
	Telegraf
	// Gostatsd is Atlassian's gostatsd: DogStatsD tags, no "d" (sent as
	// "h"), one value per line, negative gauges preceded by "name:0|g".
	Gostatsd
	numDialects
)

var dialectNames = [numDialects]string{"dogstatsd", "statsd", "statsd_exporter", "telegraf", "gostatsd"}

// String returns the dialect's name, as [ParseDialect] reads it.
func (d Dialect) String() string {
	if d < numDialects {
		return dialectNames[d]
	}
	return fmt.Sprintf("dialect(%d)", uint8(d))
}

// ParseDialect returns the dialect named s: "dogstatsd", "statsd",
// "statsd_exporter", "telegraf" or "gostatsd".
func ParseDialect(s string) (Dialect, error) {
	for d, name := range dialectNames {
		if s == name {
			return Dialect(d), nil
		}
	}
	return 0, fmt.Errorf("parse dialect %q: want one of %s", s, strings.Join(dialectNames[:], ", "))
}

// tagStyle is where a dialect puts tags.
type tagStyle uint8

const (
	tagsNone   tagStyle = iota // no tags at all
	tagsSuffix                 // "|#k:v,k:v" after the type and rate
	tagsInName                 // "name,k=v,k=v:value|type"
)

// multiStyle is how a dialect packs several values of a series in a line.
type multiStyle uint8

const (
	multiNone   multiStyle = iota // one value per line
	multiPacked                   // "name:v1:v2|d|@r|#tags"
	multiRepeat                   // "name:v1|d|@r:v2|d|@r"
)

// dialectSpec is what the packer needs to know about a dialect.
type dialectSpec struct {
	tags       tagStyle
	multi      multiStyle
	types      [numKinds]string // type field with its '|', by Kind
	gaugeReset bool             // a negative gauge needs "name:0|g" first
	noNegCount bool             // the receiver rejects a negative counter
}

var dialects = [numDialects]dialectSpec{
	DogStatsD:      {tags: tagsSuffix, multi: multiPacked, types: [numKinds]string{"|c", "|g", "|h", "|d", "|ms"}},
	StatsD:         {tags: tagsNone, multi: multiRepeat, types: [numKinds]string{"|c", "|g", "|ms", "|ms", "|ms"}, gaugeReset: true},
	StatsdExporter: {tags: tagsSuffix, multi: multiPacked, types: [numKinds]string{"|c", "|g", "|h", "|d", "|ms"}, gaugeReset: true, noNegCount: true},
	Telegraf:       {tags: tagsInName, multi: multiRepeat, types: [numKinds]string{"|c", "|g", "|h", "|h", "|ms"}, gaugeReset: true},
	Gostatsd:       {tags: tagsSuffix, multi: multiNone, types: [numKinds]string{"|c", "|g", "|h", "|h", "|ms"}, gaugeReset: true},
}
