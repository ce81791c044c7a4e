package domain

// Message ids are ULIDs in their canonical 26-character Crockford base32
// form. The aggregate keeps them as 16 raw bytes: a string key would cost
// a header and a separate allocation per message, and the command side
// holds every live message in memory.

const (
	idLen        = 16
	idTextLen    = 26
	crockford    = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	invalidDigit = 0xFF
)

var crockfordValue = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = invalidDigit
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
	}
	return t
}()

type messageID [idLen]byte

// parseMessageID decodes a canonical (upper-case) ULID string. Only the
// canonical form is accepted so that formatting the bytes again yields the
// very string that was stored in the log.
func parseMessageID(s string) (messageID, bool) {
	var id messageID
	if len(s) != idTextLen || s[0] > '7' {
		return id, false
	}
	var v [idTextLen]byte
	for i := 0; i < idTextLen; i++ {
		d := crockfordValue[s[i]]
		if d == invalidDigit {
			return id, false
		}
		v[i] = d
	}
	// 26 digits of 5 bits hold 130 bits; the first digit carries only the
	// top 3 bits of the 128-bit value.
	id[0] = v[0]<<5 | v[1]
	id[1] = v[2]<<3 | v[3]>>2
	id[2] = v[3]<<6 | v[4]<<1 | v[5]>>4
	id[3] = v[5]<<4 | v[6]>>1
	id[4] = v[6]<<7 | v[7]<<2 | v[8]>>3
	id[5] = v[8]<<5 | v[9]
	id[6] = v[10]<<3 | v[11]>>2
	id[7] = v[11]<<6 | v[12]<<1 | v[13]>>4
	id[8] = v[13]<<4 | v[14]>>1
	id[9] = v[14]<<7 | v[15]<<2 | v[16]>>3
	id[10] = v[16]<<5 | v[17]
	id[11] = v[18]<<3 | v[19]>>2
	id[12] = v[19]<<6 | v[20]<<1 | v[21]>>4
	id[13] = v[21]<<4 | v[22]>>1
	id[14] = v[22]<<7 | v[23]<<2 | v[24]>>3
	id[15] = v[24]<<5 | v[25]
	return id, true
}

func (id messageID) String() string {
	var b [idTextLen]byte
	b[0] = crockford[(id[0]&224)>>5]
	b[1] = crockford[id[0]&31]
	b[2] = crockford[(id[1]&248)>>3]
	b[3] = crockford[((id[1]&7)<<2)|((id[2]&192)>>6)]
	b[4] = crockford[(id[2]&62)>>1]
	b[5] = crockford[((id[2]&1)<<4)|((id[3]&240)>>4)]
	b[6] = crockford[((id[3]&15)<<1)|((id[4]&128)>>7)]
	b[7] = crockford[(id[4]&124)>>2]
	b[8] = crockford[((id[4]&3)<<3)|((id[5]&224)>>5)]
	b[9] = crockford[id[5]&31]
	b[10] = crockford[(id[6]&248)>>3]
	b[11] = crockford[((id[6]&7)<<2)|((id[7]&192)>>6)]
	b[12] = crockford[(id[7]&62)>>1]
	b[13] = crockford[((id[7]&1)<<4)|((id[8]&240)>>4)]
	b[14] = crockford[((id[8]&15)<<1)|((id[9]&128)>>7)]
	b[15] = crockford[(id[9]&124)>>2]
	b[16] = crockford[((id[9]&3)<<3)|((id[10]&224)>>5)]
	b[17] = crockford[id[10]&31]
	b[18] = crockford[(id[11]&248)>>3]
	b[19] = crockford[((id[11]&7)<<2)|((id[12]&192)>>6)]
	b[20] = crockford[(id[12]&62)>>1]
	b[21] = crockford[((id[12]&1)<<4)|((id[13]&240)>>4)]
	b[22] = crockford[((id[13]&15)<<1)|((id[14]&128)>>7)]
	b[23] = crockford[(id[14]&124)>>2]
	b[24] = crockford[((id[14]&3)<<3)|((id[15]&224)>>5)]
	b[25] = crockford[id[15]&31]
	return string(b[:])
}

// ValidMessageID reports whether s is a canonical ULID string, the only
// message id form the aggregate accepts.
func ValidMessageID(s string) bool {
	_, ok := parseMessageID(s)
	return ok
}
