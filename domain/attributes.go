package domain

// Attribute defaults and ranges of API.md. Durations are milliseconds.
const (
	DefaultVisibilityTimeoutMS int64 = 30000
	MinVisibilityTimeoutMS     int64 = 100
	MaxVisibilityTimeoutMS     int64 = 43200000

	DefaultDelayMS int64 = 0
	MaxDelayMS     int64 = 900000

	DefaultRetentionMS int64 = 345600000
	MinRetentionMS     int64 = 60000
	MaxRetentionMS     int64 = 1209600000

	DefaultMaxMessageBytes int64 = 262144
	MinMaxMessageBytes     int64 = 1024
	MaxMaxMessageBytes     int64 = 1048576

	// MaxMaxReceiveCount bounds max_receive_count; 0 turns dead-lettering off.
	MaxMaxReceiveCount = 1000
)

// Attribute names as they appear in the API and in QueueConfigured.Changed.
const (
	AttrVisibilityTimeoutMS = "visibility_timeout_ms"
	AttrDelayMS             = "delay_ms"
	AttrRetentionMS         = "retention_ms"
	AttrMaxMessageBytes     = "max_message_bytes"
	AttrDeadLetterQueue     = "dead_letter_queue"
	AttrMaxReceiveCount     = "max_receive_count"
)

// DefaultAttributes are the attributes of a queue created without any.
func DefaultAttributes() Attributes {
	return Attributes{
		VisibilityTimeoutMS: DefaultVisibilityTimeoutMS,
		DelayMS:             DefaultDelayMS,
		RetentionMS:         DefaultRetentionMS,
		MaxMessageBytes:     DefaultMaxMessageBytes,
	}
}

// QueueExists tells a decision whether a queue other than the aggregate's
// own currently exists; the aggregate cannot see other queues itself.
type QueueExists func(name string) bool

// patched applies p over base without validating.
func patched(base Attributes, p AttributesPatch) Attributes {
	a := base
	if p.VisibilityTimeoutMS != nil {
		a.VisibilityTimeoutMS = *p.VisibilityTimeoutMS
	}
	if p.DelayMS != nil {
		a.DelayMS = *p.DelayMS
	}
	if p.RetentionMS != nil {
		a.RetentionMS = *p.RetentionMS
	}
	if p.MaxMessageBytes != nil {
		a.MaxMessageBytes = *p.MaxMessageBytes
	}
	if p.DeadLetterQueue != nil {
		a.DeadLetterQueue = *p.DeadLetterQueue
	}
	if p.MaxReceiveCount != nil {
		a.MaxReceiveCount = *p.MaxReceiveCount
	}
	return a
}

// validateAttributes checks a complete attribute set for the queue self.
// The dead-letter queue is checked for existence only when it changes
// (changedDLQ): a queue keeps a dead-letter queue it was given even if a
// later configure call does not mention it.
func validateAttributes(self string, a Attributes, changedDLQ bool, exists QueueExists) *Error {
	if err := inRange(AttrVisibilityTimeoutMS, a.VisibilityTimeoutMS, MinVisibilityTimeoutMS, MaxVisibilityTimeoutMS); err != nil {
		return err
	}
	if err := inRange(AttrDelayMS, a.DelayMS, 0, MaxDelayMS); err != nil {
		return err
	}
	if err := inRange(AttrRetentionMS, a.RetentionMS, MinRetentionMS, MaxRetentionMS); err != nil {
		return err
	}
	if err := inRange(AttrMaxMessageBytes, a.MaxMessageBytes, MinMaxMessageBytes, MaxMaxMessageBytes); err != nil {
		return err
	}
	if a.MaxReceiveCount < 0 || a.MaxReceiveCount > MaxMaxReceiveCount {
		return Invalid(AttrMaxReceiveCount, "must be 0 (off) or 1…%d, got %d", MaxMaxReceiveCount, a.MaxReceiveCount)
	}
	if a.DeadLetterQueue == "" {
		return nil
	}
	if err := ValidateQueueName(AttrDeadLetterQueue, a.DeadLetterQueue); err != nil {
		return err
	}
	if a.DeadLetterQueue == self {
		return Invalid(AttrDeadLetterQueue, "a queue cannot be its own dead-letter queue")
	}
	if changedDLQ && (exists == nil || !exists(a.DeadLetterQueue)) {
		return Invalid(AttrDeadLetterQueue, "queue %q does not exist", a.DeadLetterQueue)
	}
	if a.MaxReceiveCount < 1 {
		return Invalid(AttrMaxReceiveCount, "is required (1…%d) when dead_letter_queue is set", MaxMaxReceiveCount)
	}
	return nil
}

func inRange(field string, v, lo, hi int64) *Error {
	if v < lo || v > hi {
		return Invalid(field, "must be %d…%d, got %d", lo, hi, v)
	}
	return nil
}

// changedAttributes names, in catalogue order, the attributes that differ.
func changedAttributes(old, new Attributes) []string {
	var c []string
	if old.VisibilityTimeoutMS != new.VisibilityTimeoutMS {
		c = append(c, AttrVisibilityTimeoutMS)
	}
	if old.DelayMS != new.DelayMS {
		c = append(c, AttrDelayMS)
	}
	if old.RetentionMS != new.RetentionMS {
		c = append(c, AttrRetentionMS)
	}
	if old.MaxMessageBytes != new.MaxMessageBytes {
		c = append(c, AttrMaxMessageBytes)
	}
	if old.DeadLetterQueue != new.DeadLetterQueue {
		c = append(c, AttrDeadLetterQueue)
	}
	if old.MaxReceiveCount != new.MaxReceiveCount {
		c = append(c, AttrMaxReceiveCount)
	}
	return c
}

// MaxQueueNameLen is the longest queue name.
const MaxQueueNameLen = 80

// ValidateQueueName checks name against ^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$,
// reporting a failure on field.
func ValidateQueueName(field, name string) *Error {
	if name == "" {
		return Invalid(field, "is required")
	}
	if len(name) > MaxQueueNameLen {
		return Invalid(field, "must be at most %d characters", MaxQueueNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return Invalid(field, "must start with a letter or digit")
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return Invalid(field, "may contain only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}
