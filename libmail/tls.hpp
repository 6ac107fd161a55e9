// OpenSSL 3 contexts: server (TLS 1.2+, cert + key from files, reload) and
// client (for relayd), and peer info for Received: headers (DESIGN §2 `tls`).
#pragma once

#include <memory>
#include <string>

#include "libmail/result.hpp"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace facteur::tls {

struct ClientOptions {
    // Verify the server's chain (and, with prepare_client, its name).
    // Opportunistic SMTP (RFC 7435) turns this off.
    bool verify_peer = true;
    std::string ca_file;  // PEM bundle; empty: the system CA store
};

// RAII over SSL_CTX; movable, not copyable.
class Context {
public:
    // Fails with a message naming the file when the certificate or key cannot
    // be read or do not match.
    static Result<Context> server(const std::string& cert_file, const std::string& key_file);
    static Result<Context> client(const ClientOptions& options);

    Context(Context&&) noexcept = default;
    Context& operator=(Context&&) noexcept = default;

    // Re-reads the certificate chain and key from the same files into the
    // same SSL_CTX (connections already made keep theirs). On failure nothing
    // changes and the old pair stays in use.
    Status reload();
    SSL_CTX* get() const { return context_.get(); }

private:
    struct Free {
        void operator()(SSL_CTX* context) const;
    };
    Context() = default;
    std::unique_ptr<SSL_CTX, Free> context_;
    std::string cert_file_, key_file_;
};

// Per connection, client side: sets SNI (RFC 6066 §3) to hostname and, when
// the context verifies peers, requires the certificate to match it
// (RFC 6125). Call after SSL_new and before the handshake.
Status prepare_client(SSL* ssl, const std::string& hostname);

// Drains the OpenSSL error queue into one line ("unknown TLS error" if empty).
std::string last_error();

struct PeerInfo {
    std::string version;  // "TLSv1.3"
    std::string cipher;   // "TLS_AES_256_GCM_SHA384"
    int bits = 0;         // 256
};
PeerInfo describe(const SSL* ssl);

}  // namespace facteur::tls
