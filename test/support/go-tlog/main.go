// Command go-tlog checks an OTI chain served as C2SP tlog-tiles with Google's own code:
// golang.org/x/mod/sumdb/note verifies the checkpoint signature, golang.org/x/mod/sumdb/tlog
// proves and checks every entry's inclusion and the consistency of an older checkpoint, over
// tiles fetched by HTTP. Used by test/e2e/tlog-interop.test.ts (docs/PROTOCOL.md §Tiles).
//
// Usage: go-tlog -prefix URL -vkey VKEY [-old FILE [-old-inclusion]]
//
// sumdb/tlog names tiles tile/<H>/<L>/<N>[.p/<W>] with the tile height in the path; C2SP
// tlog-tiles fixes the height at 8 and leaves it out: tile/<L>/<N>[.p/<W>]. The index and width
// are written the same way in both. Entry bundles (tile/entries/...) are C2SP only: records with
// a big-endian uint16 length. It prints one JSON line and exits 1 on any failure.
package main

import (
	"encoding/base64"
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
	n, err := note.Open(msg, note.VerifierList(verifier))
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

func run() (*result, error) {
	prefix := flag.String("prefix", "", "URL of the log (its checkpoint is <prefix>/checkpoint)")
	vkey := flag.String("vkey", "", "signed-note verifier key: name+hash+base64(0x01||key)")
	oldPath := flag.String("old", "", "an older checkpoint note to check for consistency")
	oldInclusion := flag.Bool("old-inclusion", false, "also prove every entry against the old checkpoint with its own (narrower) partial tiles")
	flag.Parse()
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
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
