package audit

import (
	"fmt"
	"strconv"
	"time"

	"zhianhub/crypto"
)

// entryHash returns SM3(prev || canonical entry), the canonical entry being
// entryHead(seq) || tail.
func entryHash(prev Hash, seq int64, tail []byte) Hash {
	return crypto.SM3(prev[:], entryHead(seq), tail)
}

// checkpointDomain starts the signed checkpoint text.
const checkpointDomain = "zhianhub-audit-checkpoint/v1"

// CheckpointText returns the text a checkpoint signature covers (version 1):
// these lines joined by "\n", with no trailing newline:
//
//	zhianhub-audit-checkpoint/v1
//	<seq, decimal>
//	<hash of the entry at seq, 64 lower-case hex digits>
//	<at, UTC, 2006-01-02T15:04:05.000000Z>
//	<key id of the signing key>
//	<max_gap, decimal: the next checkpoint is at most this many entries later>
//
// The signature is SM2 with SM3 and the default user id (crypto.Signer), DER.
func CheckpointText(seq int64, hash Hash, at time.Time, keyID crypto.KeyID, maxGap int64) []byte {
	b := make([]byte, 0, 256)
	b = append(b, checkpointDomain...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, '\n')
	b = fmt.Appendf(b, "%x", hash[:])
	b = append(b, '\n')
	b = append(b, canonicalTime(at).Format(TimeLayout)...)
	b = append(b, '\n')
	b = append(b, keyID...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, maxGap, 10)
	return b
}
