// MAIL FROM and RCPT TO parameters: SIZE (RFC 1870), BODY (RFC 6152,
// RFC 3030), SMTPUTF8 (RFC 6531), DSN's RET/ENVID/NOTIFY/ORCPT (RFC 3461),
// AUTH (RFC 4954 §5). Pure: parameters in, options or the refusal out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/address.hpp"
#include "libmail/queue.hpp"
#include "libmail/result.hpp"
#include "smtpd/smtp_reply.hpp"

namespace facteur::smtpd {

struct MailOptions {
    uint64_t declared_size = 0;  // SIZE=, 0 when absent
    queue::BodyType body = queue::BodyType::seven_bit;
    bool smtputf8 = false;
    queue::Ret ret = queue::Ret::unspecified;
    std::string envid;  // xtext-decoded
};

struct RcptOptions {
    unsigned notify = queue::notify_default;
    std::string orcpt;  // "addr-type;decoded address", or empty
};

// nullopt = accepted (`out` filled); otherwise the reply to send.
std::optional<Reply> parse_mail_parameters(const address::MailParameters& parameters, uint64_t message_size_limit,
                                           MailOptions& out);
std::optional<Reply> parse_rcpt_parameters(const address::MailParameters& parameters, RcptOptions& out);

// RFC 3461 §4: xtext = *( xchar / hexchar ), hexchar = "+" 2 upper-case hex
// digits, xchar = any printable ASCII but "+" and "=".
Result<std::string> decode_xtext(std::string_view text);

// RFC 3461 §4.4: ENVID is at most 100 characters; §4.2: ORCPT at most 500.
inline constexpr size_t kMaxEnvidLength = 100;
inline constexpr size_t kMaxOrcptLength = 500;

}  // namespace facteur::smtpd
