package sbom

import (
	"bytes"
	"context"
	"testing"
)

// A kept scan gives the very documents the tree gives: packages with their
// licences (licence references included), distribution and files.
func TestKeptScanGivesTheSameDocuments(t *testing.T) {
	root := debianTree(t)
	s, err := ScanTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, p := range s.Packages {
		refs += len(p.licenseRefs)
	}
	if refs == 0 {
		t.Fatalf("no package of the test tree has a licence reference: the round trip would not test them")
	}
	var buf bytes.Buffer
	if err := s.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	kept, err := DecodeScan(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Document(testInputs("debian"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kept.Document(testInputs("debian"))
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	if !bytes.Equal(ja, jb) || !bytes.Equal(a.InventoryJSON(), b.InventoryJSON()) {
		t.Errorf("the kept scan's documents differ from the tree's")
	}
	if _, err := DecodeScan(bytes.NewReader(buf.Bytes()[:buf.Len()/2])); err == nil {
		t.Errorf("half a kept scan was read")
	}
}
