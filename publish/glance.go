package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// callTimeout bounds one metadata call, so that a Glance that accepts
// connections but never answers fails the run instead of hanging it.
const callTimeout = 2 * time.Minute

// prop returns an image property as a string ("" when absent).
func prop(img images.Image, key string) string {
	if v, ok := img.Properties[key]; ok && v != nil {
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprint(v)
	}
	return ""
}

// listQuery is images.ListOpts plus filters on custom properties, which
// Glance accepts as plain query parameters but ListOpts cannot express.
type listQuery struct {
	images.ListOpts
	props map[string]string
}

func (q listQuery) ToImageListQuery() (string, error) {
	s, err := q.ListOpts.ToImageListQuery()
	if err != nil {
		return "", err
	}
	keys := make([]string, 0, len(q.props))
	for k := range q.props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sep := "&"
		if s == "" {
			sep = "?"
		}
		s += sep + url.QueryEscape(k) + "=" + url.QueryEscape(q.props[k])
	}
	return s, nil
}

// list returns every image matching the query, all pages.
func (c *Cloud) list(ctx context.Context, q listQuery) ([]images.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	pages, err := images.List(c.image, q).AllPages(ctx)
	if err != nil {
		return nil, c.apiError("list images", err)
	}
	return images.ExtractImages(pages)
}

func (c *Cloud) get(ctx context.Context, id string) (*images.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	img, err := images.Get(ctx, c.image, id).Extract()
	if err != nil {
		return nil, c.apiError("show image "+id, err)
	}
	return img, nil
}

func (c *Cloud) create(ctx context.Context, opts images.CreateOpts) (*images.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	img, err := images.Create(ctx, c.image, opts).Extract()
	if err != nil {
		return nil, c.apiError("create image "+opts.Name, err)
	}
	return img, nil
}

func (c *Cloud) update(ctx context.Context, id string, ops images.UpdateOpts) (*images.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	img, err := images.Update(ctx, c.image, id, ops).Extract()
	if err != nil {
		return nil, c.apiError("update image "+id, err)
	}
	return img, nil
}

func (c *Cloud) delete(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := images.Delete(ctx, c.image, id).ExtractErr()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil // gone already: what we wanted
	}
	if err != nil {
		return c.apiError("delete image "+id, err)
	}
	return nil
}

func (c *Cloud) upload(ctx context.Context, id string, r io.Reader) error {
	if err := imagedata.Upload(ctx, c.image, id, r).ExtractErr(); err != nil {
		return c.apiError("upload data of image "+id, err)
	}
	return nil
}

// apiError wraps a Glance error with the operation, the cloud, and what the
// status code usually means; the text is redacted.
func (c *Cloud) apiError(op string, err error) error {
	hint := ""
	var ue gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &ue):
		switch ue.Actual {
		case http.StatusUnauthorized:
			hint = " (the credentials were refused: check them, or the token expired)"
		case http.StatusForbidden:
			hint = " (Glance's policy forbids it for these credentials)"
		case http.StatusConflict:
			hint = " (the image is not in a state that allows it)"
		case http.StatusRequestEntityTooLarge:
			hint = " (over the image size limit or the project's quota)"
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			hint = " (Glance is unavailable: nothing is lost, run the same command again later to finish)"
		}
	case errors.Is(err, context.DeadlineExceeded):
		hint = fmt.Sprintf(" (no answer within %s: Glance is hung or unreachable; run the same command again to finish)", callTimeout)
	case errors.Is(err, context.Canceled):
	default:
		hint = " (is Glance reachable? nothing is lost: run the same command again to finish)"
	}
	detail := err.Error()
	if errors.As(err, &ue) {
		// gophercloud's text repeats the expected codes and the whole HTML
		// body; the status and Glance's sentence are what a reader needs.
		detail = fmt.Sprintf("HTTP %d from %s %s: %s", ue.Actual, ue.Method, ue.URL, condense(string(ue.Body), 300))
	}
	e := &apiError{msg: fmt.Sprintf("%s: %s: %s%s", c.Label, op, detail, hint), err: err}
	if c.Redact != nil {
		return c.Redact.Error(e)
	}
	return e
}

// apiError is a Glance error with a readable message; errors.As still
// finds gophercloud's error (and its status code) underneath.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// condense collapses whitespace and keeps the first n bytes.
func condense(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
