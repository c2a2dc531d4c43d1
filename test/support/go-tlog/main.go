// Command go-tlog checks an OTI chain served as C2SP tlog-tiles with Google's own code:
// golang.org/x/mod/sumdb/note verifies the checkpoint signature, golang.org/x/mod/sumdb/tlog
// proves and checks every entry's inclusion and the consistency of an older checkpoint, over
// tiles fetched by HTTP. Used by test/e2e/tlog-interop.test.ts (docs/PROTOCOL.md §Tiles).
//
// Usage: go-tlog -prefix URL -vkey VKEY [-old FILE [-old-inclusion]]
//
//	go-tlog -proof FILE -record FILE -vkey VKEY [-cosigner VKEY]...
//
// The second form checks a C2SP tlog-proof (c2sp.org/tlog-proof@v1) made by the gateway, as a
// detached proof of the record (the entry bytes) given beside it: the checkpoint note is opened
// with sumdb/note (the gateway's signature and each -cosigner's C2SP tlog-cosignature line) and the
// inclusion proof is checked with sumdb/tlog.
//
// Cosignatures: sumdb/note's NewVerifier knows only algorithm 0x01 (Ed25519 signed-note keys) and
// refuses a cosignature/v1 key (0x04) as an unknown algorithm; the program reports that error.
// note.Open itself takes any note.Verifier, so cosignatureVerifier below implements
// cosignature/v1 from the C2SP tlog-cosignature text with crypto/ed25519 (key ID
// SHA-256(name || 0x0a || 0x04 || key)[:4]; the signature is an 8-byte big-endian timestamp and
// an Ed25519 signature of "cosignature/v1\ntime <timestamp>\n" || the checkpoint text), and
// note.Open parses the lines, matches names and key IDs and calls it.
//
// sumdb/tlog names tiles tile/<H>/<L>/<N>[.p/<W>] with the tile height in the path; C2SP
// tlog-tiles fixes the height at 8 and leaves it out: tile/<L>/<N>[.p/<W>]. The index and width
// are written the same way in both. Entry bundles (tile/entries/...) are C2SP only: records with
// a big-endian uint16 length. It prints one JSON line and exits 1 on any failure.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

type fetcher struct {
	prefix string
	cache  map[string][]byte
	gets   int
}

func (f *fetcher) get(path string) ([]byte, error) {
	if b, ok := f.cache[path]; ok {
		return b, nil
	}
	resp, err := http.Get(f.prefix + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	f.gets++
	f.cache[path] = b
	return b, nil
}

// c2spPath is the C2SP tlog-tiles path of a sumdb tile: the height dropped from the path.
func c2spPath(t tlog.Tile) string {
	return fmt.Sprintf("tile/%d/%s", t.L, strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/%d/", t.H, t.L)))
}

// tileReader is a tlog.TileReader over HTTP.
type tileReader struct{ f *fetcher }

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.f.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// checkpoint opens a signed note and parses the C2SP tlog-checkpoint body (origin, size, root,
// then extension lines, which tlog-checkpoint allows and this reader ignores).
func checkpoint(msg []byte, verifier note.Verifier) (string, tlog.Tree, error) {
	return checkpointWith(msg, note.VerifierList(verifier), nil)
}

// checkpointWith opens the note with several verifiers and, given a proofResult, lists the
// signature lines note.Open verified and those it did not know.
func checkpointWith(msg []byte, verifiers note.Verifiers, res *proofResult) (string, tlog.Tree, error) {
	n, err := note.Open(msg, verifiers)
	if err == nil && res != nil {
		for _, s := range n.Sigs {
			res.Signatures = append(res.Signatures, s.Name)
		}
		for _, s := range n.UnverifiedSigs {
			res.Unverified = append(res.Unverified, s.Name)
		}
	}
	if err != nil {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return "", tlog.Tree{}, errors.New("checkpoint has fewer than 3 lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint root %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], tlog.Tree{N: size, Hash: h}, nil
}

// bundle reads the entry bundle holding entry i of a tree of size n (full or partial).
func bundle(f *fetcher, i, n int64) ([][]byte, error) {
	idx := i / 256
	w := int(n - idx*256)
	if w > 256 {
		w = 256
	}
	t := tlog.Tile{H: tileHeight, L: 0, N: idx, W: w}
	path := "tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/0/", tileHeight))
	b, err := f.get(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%s: truncated record length", path)
		}
		l := int(b[0])<<8 | int(b[1])
		if len(b) < 2+l {
			return nil, fmt.Errorf("%s: truncated record", path)
		}
		out = append(out, b[2:2+l])
		b = b[2+l:]
	}
	if len(out) != w {
		return nil, fmt.Errorf("%s holds %d entries, want %d", path, len(out), w)
	}
	return out, nil
}

// cosignatureVerifier is a note.Verifier for C2SP tlog-cosignature v1 (Ed25519, key type 0x04).
type cosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
	// Timestamps of the cosignatures it verified.
	seen []uint64
}

// newCosignatureVerifier reads a vkey "name+<key ID hex>+base64(0x04 || key)".
func newCosignatureVerifier(vkey string) (*cosignatureVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || len(parts[1]) != 8 {
		return nil, fmt.Errorf("cosigner key %q: want name+keyid+base64", vkey)
	}
	id, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("cosigner key id %q: %w", parts[1], err)
	}
	k, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(k) != 33 || k[0] != 0x04 {
		return nil, fmt.Errorf("cosigner key %q: want base64 of 0x04 and 32 bytes", parts[2])
	}
	h := sha256.Sum256(append(append([]byte(parts[0]+"\n"), 0x04), k[1:]...))
	if binary.BigEndian.Uint32(h[:4]) != uint32(id) {
		return nil, fmt.Errorf("cosigner key %q: key id does not match name and key", vkey)
	}
	return &cosignatureVerifier{name: parts[0], hash: uint32(id), key: ed25519.PublicKey(k[1:])}, nil
}

func (v *cosignatureVerifier) Name() string    { return v.name }
func (v *cosignatureVerifier) KeyHash() uint32 { return v.hash }

// Verify checks sig = timestamp (8 bytes) || Ed25519 signature over the cosigned message.
func (v *cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	if !ed25519.Verify(v.key, m, sig[8:]) {
		return false
	}
	v.seen = append(v.seen, ts)
	return true
}

type cosigners []string

func (c *cosigners) String() string     { return strings.Join(*c, ",") }
func (c *cosigners) Set(s string) error { *c = append(*c, s); return nil }

type proofResult struct {
	Origin     string   `json:"origin"`
	Size       int64    `json:"size"`
	Root       string   `json:"root"`
	Index      int64    `json:"index"`
	Included   bool     `json:"included"`
	Extra      int      `json:"extraBytes"`
	Signatures []string `json:"signatures"`
	Cosigners  []string `json:"cosigners"`
	Unverified []string `json:"unverified"`
	// What note.NewVerifier says to a cosignature/v1 key.
	NoteNewVerifierCosigner string `json:"noteNewVerifierCosigner,omitempty"`
}

// checkProof reads a C2SP tlog-proof: the header, an optional extra line, the index line, the
// inclusion proof hashes, an empty line, then the checkpoint note.
func checkProof(proofPath, recordPath string, gateway note.Verifier, cosignerKeys []string) (*proofResult, error) {
	b, err := os.ReadFile(proofPath)
	if err != nil {
		return nil, err
	}
	record, err := os.ReadFile(recordPath)
	if err != nil {
		return nil, err
	}
	split := bytes.Index(b, []byte("\n\n"))
	if split < 0 {
		return nil, errors.New("tlog-proof: no empty line before the checkpoint")
	}
	head := strings.Split(string(b[:split]), "\n")
	msg := b[split+2:]
	if head[0] != "c2sp.org/tlog-proof@v1" {
		return nil, fmt.Errorf("tlog-proof: first line %q", head[0])
	}
	head = head[1:]
	res := &proofResult{Signatures: []string{}, Cosigners: []string{}, Unverified: []string{}}
	if len(head) > 0 && strings.HasPrefix(head[0], "extra ") {
		extra, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(head[0], "extra "))
		if err != nil {
			return nil, fmt.Errorf("tlog-proof extra: %w", err)
		}
		res.Extra = len(extra)
		head = head[1:]
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "index ") {
		return nil, errors.New("tlog-proof: no index line")
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(head[0], "index "), 10, 64)
	if err != nil || index < 0 {
		return nil, fmt.Errorf("tlog-proof index %q", head[0])
	}
	var proof tlog.RecordProof
	for _, line := range head[1:] {
		h, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(h) != tlog.HashSize {
			return nil, fmt.Errorf("tlog-proof hash line %q", line)
		}
		var x tlog.Hash
		copy(x[:], h)
		proof = append(proof, x)
	}
	verifiers := []note.Verifier{gateway}
	var cvs []*cosignatureVerifier
	for _, k := range cosignerKeys {
		if _, err := note.NewVerifier(k); err != nil {
			res.NoteNewVerifierCosigner = err.Error()
		}
		cv, err := newCosignatureVerifier(k)
		if err != nil {
			return nil, err
		}
		cvs = append(cvs, cv)
		verifiers = append(verifiers, cv)
	}
	origin, tree, err := checkpointWith(msg, note.VerifierList(verifiers...), res)
	if err != nil {
		return nil, err
	}
	for _, cv := range cvs {
		if len(cv.seen) == 0 {
			return nil, fmt.Errorf("no cosignature by %s on the checkpoint", cv.name)
		}
		res.Cosigners = append(res.Cosigners, cv.name)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(record)); err != nil {
		return nil, fmt.Errorf("record %d: %w", index, err)
	}
	res.Origin, res.Size, res.Root, res.Index, res.Included = origin, tree.N, tree.Hash.String(), index, true
	return res, nil
}

type result struct {
	Origin      string `json:"origin"`
	Size        int64  `json:"size"`
	Root        string `json:"root"`
	Included    int64  `json:"included"`
	OldSize     int64  `json:"oldSize,omitempty"`
	Consistent  bool   `json:"consistent"`
	OldIncluded int64  `json:"oldIncluded,omitempty"`
	Fetches     int    `json:"fetches"`
}

func run() (any, error) {
	prefix := flag.String("prefix", "", "URL of the log (its checkpoint is <prefix>/checkpoint)")
	vkey := flag.String("vkey", "", "signed-note verifier key: name+hash+base64(0x01||key)")
	oldPath := flag.String("old", "", "an older checkpoint note to check for consistency")
	oldInclusion := flag.Bool("old-inclusion", false, "also prove every entry against the old checkpoint with its own (narrower) partial tiles")
	proofPath := flag.String("proof", "", "a C2SP tlog-proof file to check instead of the tiles")
	recordPath := flag.String("record", "", "the record (entry bytes) the tlog-proof proves")
	var cosignerKeys cosigners
	flag.Var(&cosignerKeys, "cosigner", "a witness key (name+keyid+base64(0x04||key)) whose cosignature the checkpoint must carry; repeatable")
	flag.Parse()
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	if *proofPath != "" {
		return checkProof(*proofPath, *recordPath, verifier, cosignerKeys)
	}
	f := &fetcher{prefix: strings.TrimSuffix(*prefix, "/"), cache: map[string][]byte{}}
	msg, err := f.get("checkpoint")
	if err != nil {
		return nil, err
	}
	origin, tree, err := checkpoint(msg, verifier)
	if err != nil {
		return nil, err
	}
	hr := tlog.TileHashReader(tree, tileReader{f})
	res := &result{Origin: origin, Size: tree.N, Root: tree.Hash.String()}
	for i := int64(0); i < tree.N; i++ {
		entries, err := bundle(f, i, tree.N)
		if err != nil {
			return nil, err
		}
		p, err := tlog.ProveRecord(tree.N, i, hr)
		if err != nil {
			return nil, fmt.Errorf("prove entry %d: %w", i, err)
		}
		if err := tlog.CheckRecord(p, tree.N, tree.Hash, i, tlog.RecordHash(entries[i%256])); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		res.Included++
	}
	if *oldPath != "" {
		oldMsg, err := os.ReadFile(*oldPath)
		if err != nil {
			return nil, err
		}
		oldOrigin, old, err := checkpoint(oldMsg, verifier)
		if err != nil {
			return nil, fmt.Errorf("old %w", err)
		}
		if oldOrigin != origin {
			return nil, fmt.Errorf("old checkpoint is of %q, not %q", oldOrigin, origin)
		}
		p, err := tlog.ProveTree(tree.N, old.N, hr)
		if err != nil {
			return nil, fmt.Errorf("prove consistency %d -> %d: %w", old.N, tree.N, err)
		}
		if err := tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash); err != nil {
			return nil, fmt.Errorf("consistency %d -> %d: %w", old.N, tree.N, err)
		}
		res.OldSize = old.N
		res.Consistent = true
		if !*oldInclusion {
			res.Fetches = f.gets
			return res, nil
		}
		// The old tree's own tiles (narrower partial tiles) prove its entries too.
		ohr := tlog.TileHashReader(old, tileReader{f})
		for i := int64(0); i < old.N; i++ {
			entries, err := bundle(f, i, old.N)
			if err != nil {
				return nil, err
			}
			p, err := tlog.ProveRecord(old.N, i, ohr)
			if err != nil {
				return nil, fmt.Errorf("prove entry %d in the old tree: %w", i, err)
			}
			if err := tlog.CheckRecord(p, old.N, old.Hash, i, tlog.RecordHash(entries[i%256])); err != nil {
				return nil, fmt.Errorf("entry %d in the old tree: %w", i, err)
			}
			res.OldIncluded++
		}
	}
	res.Fetches = f.gets
	return res, nil
}

func main() {
	res, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-tlog:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
