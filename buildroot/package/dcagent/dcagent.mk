################################################################################
#
# dcagent
#
################################################################################

DCAGENT_VERSION = 0.1.0
# The source is the repository this external tree lives in. Buildroot builds
# Go packages with -mod=vendor and no network: the post-rsync hook vendors
# the modules unless the tree already has a vendor/ folder (run
# `go mod vendor` there first on a build machine without module access).
DCAGENT_SITE = $(BR2_EXTERNAL_DCAGENT_PATH)/..
DCAGENT_SITE_METHOD = local
DCAGENT_LICENSE = Apache-2.0
DCAGENT_LICENSE_FILES = LICENSE
DCAGENT_GOMOD = github.com/dcagent/dcagent
DCAGENT_BUILD_TARGETS = cmd/dcagent

# Keep in step with GOFLAGS_DEVICE in the repository's Makefile (a test in
# buildroot/ checks it): stripped, version stamped; the golang-package
# infrastructure adds -trimpath itself.
DCAGENT_LDFLAGS = -s -w -X main.version=$(DCAGENT_VERSION)
# Inlining off: 12% smaller, see the Makefile.
DCAGENT_BUILD_OPTS = -gcflags=all=-l

ifeq ($(BR2_PACKAGE_DCAGENT_PKCS11),y)
DCAGENT_GO_ENV = CGO_ENABLED=1
else
DCAGENT_GO_ENV = CGO_ENABLED=0
endif

ifeq ($(BR2_PACKAGE_DCAGENT_KEYSTORE_PKCS11),y)
DCAGENT_KEY_URI = pkcs11:token=dcagent;object=device-key?module-path=$(call qstrip,$(BR2_PACKAGE_DCAGENT_PKCS11_MODULE))&pin-source=file:/etc/dcagent/token.pin
else ifeq ($(BR2_PACKAGE_DCAGENT_KEYSTORE_FILE),y)
DCAGENT_KEY_URI = file:/var/lib/dcagent/device-key.pem
else
DCAGENT_KEY_URI = tpm:/dev/tpmrm0
endif

define DCAGENT_VENDOR_MODULES
	if [ ! -d $(@D)/vendor ]; then \
		cd $(@D) && $(HOST_GO_COMMON_ENV) GOFLAGS=-mod=mod GOPROXY= \
			$(GO_BIN) mod vendor; \
	fi
endef
DCAGENT_POST_RSYNC_HOOKS += DCAGENT_VENDOR_MODULES

# The configuration holds no secret but says where the key and the state
# are: readable by root only. The state directory holds the certificate,
# the spool and the audit log.
define DCAGENT_INSTALL_CONFIG
	$(INSTALL) -d -m 0700 $(TARGET_DIR)/var/lib/dcagent
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/etc/dcagent
	sed -e 's|@KEY_URI@|$(DCAGENT_KEY_URI)|' \
		-e 's|@BACKEND_URL@|$(call qstrip,$(BR2_PACKAGE_DCAGENT_BACKEND_URL))|' \
		$(DCAGENT_PKGDIR)/dcagent.conf > $(TARGET_DIR)/etc/dcagent/dcagent.conf
	chmod 0600 $(TARGET_DIR)/etc/dcagent/dcagent.conf
endef
DCAGENT_POST_INSTALL_TARGET_HOOKS += DCAGENT_INSTALL_CONFIG

define DCAGENT_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(DCAGENT_PKGDIR)/S95dcagent \
		$(TARGET_DIR)/etc/init.d/S95dcagent
endef

define DCAGENT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(DCAGENT_PKGDIR)/dcagent.service \
		$(TARGET_DIR)/usr/lib/systemd/system/dcagent.service
endef

$(eval $(golang-package))
