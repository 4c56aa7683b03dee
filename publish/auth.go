package publish

import (
	"builder/internal/redact"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	tokens3 "github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// Credentials say how to reach one cloud, the OpenStack way.
type Credentials struct {
	// Cloud names an entry of clouds.yaml (--os-cloud). Empty means
	// OS_CLOUD from Env, and without that the OS_* variables of an openrc.
	Cloud string
	// Env holds the environment the OS_* variables are read from (the
	// process environment in the command; tests pass their own).
	Env map[string]string
	// UserAgent is prepended to gophercloud's (e.g. "builder/1.2").
	UserAgent string
	// Redact, when set, learns the secrets Connect finds (passwords and
	// tokens of the environment or clouds.yaml, the session's token), so
	// that writers already wrapped with it stay clean. nil: a new one.
	Redact *redact.Redactor
}

// EnvMap turns KEY=VALUE pairs (os.Environ()) into a map.
func EnvMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// ConfigError is credentials that are missing or incomplete, found before
// any cloud was asked: the command reports it as a usage error.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Cloud is an authenticated connection to one cloud's image service.
type Cloud struct {
	// Label names the cloud in messages: the clouds.yaml entry, or the
	// auth URL and project of an openrc, or the noauth endpoint.
	Label string
	// Project is the project the credentials are scoped to; images are
	// created with it as owner. Empty without Keystone (noauth), where
	// Glance records no owner.
	Project string
	// Redact removes this cloud's secrets from text.
	Redact *redact.Redactor

	image      *gophercloud.ServiceClient
	provider   *gophercloud.ProviderClient
	hasCatalog bool
	endpoint   gophercloud.EndpointOpts
}

// Connect authenticates (when the cloud uses Keystone) and finds the image
// service. Errors name what is missing and how to provide it; they never
// contain a secret.
func Connect(ctx context.Context, cr Credentials) (*Cloud, error) {
	env := cr.Env
	if env == nil {
		env = map[string]string{}
	}
	name := cr.Cloud
	if name == "" {
		name = env["OS_CLOUD"]
	}
	red := cr.Redact
	if red == nil {
		red = redact.New()
	}
	red.Add(env["OS_PASSWORD"], env["OS_TOKEN"], env["OS_AUTH_TOKEN"], env["OS_APPLICATION_CREDENTIAL_SECRET"])
	c, err := connect(ctx, cr, env, name, red)
	if err != nil {
		return nil, red.Error(err)
	}
	c.Redact = red
	if c.provider != nil {
		c.provider.UserAgent.Prepend(cr.UserAgent)
		p := c.provider
		red.AddSource(func() []string { return []string{p.Token()} })
	}
	return c, nil
}

func connect(ctx context.Context, cr Credentials, env map[string]string, cloudName string, red *redact.Redactor) (*Cloud, error) {
	if cloudName != "" {
		return connectCloudsYAML(ctx, env, cloudName, red)
	}
	authType := strings.ToLower(env["OS_AUTH_TYPE"])
	imageURL := firstOf(env["OS_IMAGE_URL"], env["OS_ENDPOINT"])
	token := firstOf(env["OS_TOKEN"], env["OS_AUTH_TOKEN"])
	hc, err := httpClient(env["OS_CACERT"], isTrue(env["OS_INSECURE"]))
	if err != nil {
		return nil, &ConfigError{err}
	}
	switch {
	case authType == "none" || authType == "noauth":
		// A Glance with no authentication (paste flavor without keystone):
		// there is no catalog, the endpoint must be given.
		if imageURL == "" {
			return nil, &ConfigError{errors.New("OS_AUTH_TYPE=none needs the Glance endpoint: set OS_IMAGE_URL (e.g. http://127.0.0.1:9292)")}
		}
		return directClient(imageURL, firstOf(token, "noauth"), hc, "Glance at "+imageURL+" (no authentication)")
	case env["OS_PASSWORD"] == "" && env["OS_APPLICATION_CREDENTIAL_SECRET"] == "" && token != "" && imageURL != "":
		// glanceclient's --os-token with --os-image-url: no Keystone call,
		// so nothing says which project the token is for; publish must
		// know it to touch only that project's images.
		project := firstOf(env["OS_PROJECT_ID"], env["OS_TENANT_ID"])
		if project == "" {
			return nil, &ConfigError{errors.New("OS_TOKEN with OS_IMAGE_URL needs OS_PROJECT_ID (the project the token is scoped to): publish only touches that project's images")}
		}
		c, err := directClient(imageURL, token, hc, "Glance at "+imageURL+" (token, project "+project+")")
		if err != nil {
			return nil, err
		}
		c.Project = project
		return c, nil
	}
	if env["OS_AUTH_URL"] == "" {
		return nil, &ConfigError{errors.New("no OpenStack credentials: source an openrc file (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ...) or pass --os-cloud NAME to use clouds.yaml")}
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            env["OS_AUTH_URL"],
		Username:                    env["OS_USERNAME"],
		UserID:                      firstOf(env["OS_USER_ID"], env["OS_USERID"]),
		Password:                    env["OS_PASSWORD"],
		Passcode:                    env["OS_PASSCODE"],
		DomainID:                    firstOf(env["OS_USER_DOMAIN_ID"], env["OS_DOMAIN_ID"]),
		DomainName:                  firstOf(env["OS_USER_DOMAIN_NAME"], env["OS_DOMAIN_NAME"]),
		ApplicationCredentialID:     env["OS_APPLICATION_CREDENTIAL_ID"],
		ApplicationCredentialName:   env["OS_APPLICATION_CREDENTIAL_NAME"],
		ApplicationCredentialSecret: env["OS_APPLICATION_CREDENTIAL_SECRET"],
		TokenID:                     token,
	}
	if ao.Password == "" && ao.ApplicationCredentialSecret == "" && ao.TokenID == "" {
		return nil, &ConfigError{errors.New("OS_AUTH_URL is set but there is no OS_PASSWORD, OS_APPLICATION_CREDENTIAL_SECRET or OS_TOKEN: source the complete openrc file")}
	}
	// The project domain may differ from the user's (openrc files set both).
	project := firstOf(env["OS_PROJECT_NAME"], env["OS_TENANT_NAME"])
	projectID := firstOf(env["OS_PROJECT_ID"], env["OS_TENANT_ID"])
	if projectID != "" {
		ao.Scope = &gophercloud.AuthScope{ProjectID: projectID}
	} else if project != "" {
		ao.Scope = &gophercloud.AuthScope{
			ProjectName: project,
			DomainID:    firstOf(env["OS_PROJECT_DOMAIN_ID"], env["OS_DOMAIN_ID"], env["OS_USER_DOMAIN_ID"]),
			DomainName:  firstOf(env["OS_PROJECT_DOMAIN_NAME"], env["OS_DOMAIN_NAME"], env["OS_USER_DOMAIN_NAME"]),
		}
		if ao.Scope.DomainID != "" {
			ao.Scope.DomainName = ""
		}
	}
	eo := gophercloud.EndpointOpts{Region: env["OS_REGION_NAME"], Availability: availability(env["OS_INTERFACE"])}
	label := fmt.Sprintf("OS_AUTH_URL %s (user %s, project %s)", ao.IdentityEndpoint, firstOf(ao.Username, ao.UserID, ao.ApplicationCredentialName, ao.ApplicationCredentialID, "from token"), firstOf(project, projectID, "unscoped"))
	return keystoneClient(ctx, ao, eo, hc, imageURL, label, "check the OS_* variables (source the right openrc)")
}

func connectCloudsYAML(ctx context.Context, env map[string]string, name string, red *redact.Redactor) (*Cloud, error) {
	opts := []clouds.ParseOption{clouds.WithCloudName(name)}
	if f := env["OS_CLIENT_CONFIG_FILE"]; f != "" {
		opts = append(opts, clouds.WithLocations(f))
	}
	if r := env["OS_REGION_NAME"]; r != "" {
		opts = append(opts, clouds.WithRegion(r))
	}
	ao, eo, tlsConf, err := clouds.Parse(opts...)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("cloud %q: %w (define it in clouds.yaml: ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml, or OS_CLIENT_CONFIG_FILE)", name, err)}
	}
	red.Add(ao.Password, ao.TokenID, ao.ApplicationCredentialSecret, ao.Passcode)
	if ao.IdentityEndpoint == "" {
		return nil, &ConfigError{fmt.Errorf("cloud %q in clouds.yaml has no auth.auth_url: builder needs Keystone for clouds.yaml entries (for a Glance without authentication use OS_AUTH_TYPE=none and OS_IMAGE_URL)", name)}
	}
	hc := &http.Client{}
	if tlsConf != nil {
		hc.Transport = &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConf}
	}
	// clouds.Parse folds the user and project domains into one DomainName;
	// that is right whenever both are the same, the usual case.
	return keystoneClient(ctx, ao, eo, hc, env["OS_IMAGE_URL"], fmt.Sprintf("cloud %q", name), "check its entry in clouds.yaml")
}

func keystoneClient(ctx context.Context, ao gophercloud.AuthOptions, eo gophercloud.EndpointOpts, hc *http.Client, imageURL, label, fix string) (*Cloud, error) {
	provider, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("%s: auth URL: %w (%s)", label, err, fix)
	}
	provider.HTTPClient = *hc
	// A long upload must not die because the token expired in between;
	// gophercloud cannot re-authenticate with a bare token.
	ao.AllowReauth = ao.Password != "" || ao.ApplicationCredentialSecret != ""
	if err := openstack.Authenticate(ctx, provider, ao); err != nil {
		return nil, fmt.Errorf("%s: authentication failed: %w (%s)", label, err, fix)
	}
	c := &Cloud{Label: label, provider: provider, hasCatalog: true, endpoint: eo}
	c.Project = projectOf(provider.GetAuthResult())
	if imageURL != "" {
		// Like glanceclient's --os-image-url: Keystone for the token,
		// this endpoint for the images.
		c.image = imageClient(provider, imageURL)
	} else {
		c.image, err = openstack.NewImageV2(provider, eo)
		if err != nil {
			return nil, fmt.Errorf("%s: no image service (Glance) in the catalog for region %q, interface %q: %w (set OS_REGION_NAME / OS_INTERFACE, or OS_IMAGE_URL)", label, eo.Region, eo.Availability, err)
		}
	}
	return c, nil
}

func directClient(url, token string, hc *http.Client, label string) (*Cloud, error) {
	provider := &gophercloud.ProviderClient{HTTPClient: *hc}
	provider.SetToken(token)
	return &Cloud{Label: label, provider: provider, image: imageClient(provider, url)}, nil
}

func imageClient(p *gophercloud.ProviderClient, url string) *gophercloud.ServiceClient {
	base := gophercloud.NormalizeURL(strings.TrimSuffix(strings.TrimSuffix(url, "/"), "/v2"))
	return &gophercloud.ServiceClient{ProviderClient: p, Endpoint: base, ResourceBase: base + "v2/", Type: "image"}
}

// projectOf is the project ID of a Keystone v3 token.
func projectOf(r gophercloud.AuthResult) string {
	var p *tokens3.Project
	switch t := r.(type) {
	case tokens3.CreateResult:
		p, _ = t.ExtractProject()
	case tokens3.GetResult:
		p, _ = t.ExtractProject()
	}
	if p == nil {
		return ""
	}
	return p.ID
}

// RequireCompute checks that the cloud has Nova, for the smoke test.
func (c *Cloud) RequireCompute() error {
	if !c.hasCatalog {
		return fmt.Errorf("--smoke-test needs Nova (compute) in the cloud: %s has no service catalog (no Keystone); drop --smoke-test", c.Label)
	}
	if _, err := openstack.NewComputeV2(c.provider, c.endpoint); err != nil {
		return fmt.Errorf("--smoke-test needs Nova (compute) in the cloud: the catalog of %s has no compute endpoint; drop --smoke-test", c.Label)
	}
	return nil
}

func httpClient(cacert string, insecure bool) (*http.Client, error) {
	if cacert == "" && !insecure {
		return &http.Client{}, nil
	}
	conf := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // OS_INSECURE is the user's explicit choice
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("OS_CACERT: %w; point it at the cloud's CA certificate (PEM)", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OS_CACERT %s holds no PEM certificate", cacert)
		}
		conf.RootCAs = pool
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: conf}}, nil
}

func availability(s string) gophercloud.Availability {
	switch s {
	case "internal", "internalURL":
		return gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func isTrue(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
