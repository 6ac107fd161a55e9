// RFC 5322 §3.4 address lists for headers (To:, From:, Cc:, ...), with the
// obsolete forms of §4.4 and UTF-8 per RFC 6532 (see address.hpp).
#include "libmail/address.hpp"

#include <fmt/format.h>

#include <cstring>

#include "libmail/address_syntax.hpp"

namespace facteur::address {

using namespace syntax;

namespace {

// RFC 5322 §3.2.2-§3.4 tokens after unfolding, with comments removed.
enum class TokenKind { atom, quoted, literal, special, end };

struct Token {
    TokenKind kind = TokenKind::end;
    std::string text;           // decoded content (atom text, quoted content, literal content)
    char special = 0;           // for TokenKind::special: one of < > : ; @ , .
    bool space_before = false;  // whitespace or a comment came before it
};

class Tokenizer {
public:
    explicit Tokenizer(std::string_view text) : text_(text) {}

    Result<std::vector<Token>> run() {
        std::vector<Token> tokens;
        bool space = false;
        while (i_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[i_]);
            auto folded = skip_fws();
            if (!folded) return make_error(folded.error());
            if (*folded) {
                space = true;
                continue;
            }
            Token token;
            token.space_before = space;
            space = false;
            if (c == '(') {
                auto status = skip_comment();
                if (!status) return make_error(status.error());
                space = true;
                continue;
            }
            if (c == '"') {
                auto status = read_quoted(token);
                if (!status) return make_error(status.error());
            } else if (c == '[') {
                auto status = read_literal(token);
                if (!status) return make_error(status.error());
            } else if (c == ')') {
                return make_error("unbalanced ')' outside a comment");
            } else if (c == ']') {
                return make_error("unbalanced ']' outside a domain literal");
            } else if (c == '\\') {
                return make_error("'\\' outside a quoted string or comment");
            } else if (std::strchr("<>:;@,.", c) != nullptr) {
                token.kind = TokenKind::special;
                token.special = static_cast<char>(c);
                ++i_;
            } else if (is_atext(c) || c >= 0x80) {
                auto status = read_atom(token);
                if (!status) return make_error(status.error());
            } else {
                return make_error(fmt::format("invalid character {} in address", describe_byte(c)));
            }
            tokens.push_back(std::move(token));
        }
        Token end;
        end.space_before = space;
        tokens.push_back(std::move(end));
        return tokens;
    }

private:
    // WSP, or RFC 5322 §3.2.2 folding: CRLF followed by WSP. Any other CR,
    // LF or control character is an error (header injection, smuggling).
    Result<bool> skip_fws() {
        const auto c = static_cast<unsigned char>(text_[i_]);
        if (c == ' ' || c == '\t') {
            ++i_;
            return true;
        }
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i_ + 2 < text_.size() && text_[i_ + 1] == '\n' && (text_[i_ + 2] == ' ' || text_[i_ + 2] == '\t')) {
                i_ += 3;
                return true;
            }
            return make_error(fmt::format("{} not part of a folding CRLF followed by whitespace", describe_byte(c)));
        }
        if (is_control(c)) return make_error(fmt::format("control character {} in address", describe_byte(c)));
        return false;
    }

    // A UTF-8 sequence (RFC 6532 §3.2 allows them in atoms, quoted strings
    // and comments) appended to `out` when not null.
    Status copy_utf8(std::string* out) {
        const size_t length = utf8_sequence_length(text_, i_);
        if (length == 0) return make_error("invalid UTF-8 in address");
        if (out != nullptr) out->append(text_.substr(i_, length));
        i_ += length;
        return {};
    }

    // quoted-pair = "\" (VCHAR / WSP), VCHAR extended to UTF-8 by RFC 6532.
    Status quoted_pair(std::string* out) {
        ++i_;
        if (i_ >= text_.size()) return make_error("bad escape: '\\' at the end of the text");
        const auto c = static_cast<unsigned char>(text_[i_]);
        if (c >= 0x80) return copy_utf8(out);
        if (is_control(c) && c != '\t') return make_error(fmt::format("bad escape: '\\' followed by {}", describe_byte(c)));
        if (out != nullptr) *out += static_cast<char>(c);
        ++i_;
        return {};
    }

    // RFC 5322 §3.2.2 comment, nested up to max_comment_depth.
    Status skip_comment() {
        size_t depth = 0;
        while (i_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[i_]);
            auto folded = skip_fws();
            if (!folded) return make_error(folded.error());
            if (*folded) continue;
            if (c == '(') {
                if (++depth > max_comment_depth) {
                    return make_error(fmt::format("comments nested deeper than {}", max_comment_depth));
                }
                ++i_;
            } else if (c == ')') {
                ++i_;
                if (--depth == 0) return {};
            } else if (c == '\\') {
                auto status = quoted_pair(nullptr);
                if (!status) return status;
            } else if (c >= 0x80) {
                auto status = copy_utf8(nullptr);
                if (!status) return status;
            } else {
                ++i_;  // ctext
            }
        }
        return make_error("unterminated comment (missing ')')");
    }

    // RFC 5322 §3.2.4 quoted-string; folding CRLFs are removed, the WSP kept.
    Status read_quoted(Token& token) {
        token.kind = TokenKind::quoted;
        ++i_;
        while (i_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[i_]);
            if (c == '"') {
                ++i_;
                return {};
            }
            if (c == '\\') {
                auto status = quoted_pair(&token.text);
                if (!status) return status;
            } else if (c >= 0x80) {
                auto status = copy_utf8(&token.text);
                if (!status) return status;
            } else if (c == '\r') {
                auto folded = skip_fws();
                if (!folded) return make_error(folded.error());
                token.text += text_[i_ - 1];
            } else if (is_control(c) && c != '\t') {
                return make_error(fmt::format("control character {} in quoted string", describe_byte(c)));
            } else {
                token.text += static_cast<char>(c);
                ++i_;
            }
        }
        return make_error("unterminated quoted string (missing '\"')");
    }

    // RFC 5322 §3.4.1 domain-literal: dtext with optional FWS, which is dropped.
    Status read_literal(Token& token) {
        token.kind = TokenKind::literal;
        ++i_;
        while (i_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[i_]);
            auto folded = skip_fws();
            if (!folded) return make_error(folded.error());
            if (*folded) continue;
            if (c == ']') {
                ++i_;
                if (token.text.empty()) return make_error("empty domain literal '[]'");
                return {};
            }
            if (c == '[' || c == '\\') return make_error(fmt::format("invalid character {} in domain literal", describe_byte(c)));
            if (c >= 0x80) {
                auto status = copy_utf8(&token.text);
                if (!status) return status;
            } else {
                token.text += static_cast<char>(c);
                ++i_;
            }
        }
        return make_error("unterminated domain literal (missing ']')");
    }

    Status read_atom(Token& token) {
        token.kind = TokenKind::atom;
        while (i_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[i_]);
            if (c >= 0x80) {
                auto status = copy_utf8(&token.text);
                if (!status) return status;
            } else if (is_atext(c)) {
                token.text += static_cast<char>(c);
                ++i_;
            } else {
                break;
            }
        }
        return {};
    }

    std::string_view text_;
    size_t i_ = 0;
};

std::string describe_token(const Token& token) {
    switch (token.kind) {
        case TokenKind::end: return "end of text";
        case TokenKind::special: return fmt::format("'{}'", token.special);
        case TokenKind::quoted: return "quoted string";
        case TokenKind::literal: return "domain literal";
        case TokenKind::atom: return "word";
    }
    return "token";
}

// Recursive descent over the tokens of an RFC 5322 §3.4 address-list.
class ListParser {
public:
    explicit ListParser(const std::vector<Token>& tokens) : tokens_(tokens) {}

    Result<std::vector<Mailbox>> address_list() {
        std::vector<Mailbox> mailboxes;
        bool any = false;
        while (true) {
            // RFC 5322 §4.4 obs-addr-list: empty elements between commas.
            while (is_special(',')) ++pos_;
            if (peek().kind == TokenKind::end) break;
            auto status = address(mailboxes, nullptr);
            if (!status) return make_error(status.error());
            any = true;
            if (peek().kind == TokenKind::end) break;
            if (!is_special(',')) return make_error(after_address_error());
            ++pos_;
        }
        if (!any) return make_error("no address in the list");
        return mailboxes;
    }

private:
    const Token& peek() const { return tokens_[pos_]; }
    bool is_special(char c) const { return peek().kind == TokenKind::special && peek().special == c; }
    bool is_word() const { return peek().kind == TokenKind::atom || peek().kind == TokenKind::quoted; }

    std::string after_address_error() const {
        if (is_special('@')) return "more than one '@' in address";
        if (is_special('>')) return "unbalanced '>'";
        return fmt::format("expected ',' between addresses, found {}", describe_token(peek()));
    }

    // address = mailbox / group. `group` is the enclosing group's name.
    Status address(std::vector<Mailbox>& out, const std::string* group) {
        // Words and dots: a display name, a group name or a local part,
        // depending on what follows.
        const size_t start = pos_;
        while (is_word() || is_special('.')) ++pos_;
        const size_t end = pos_;

        Mailbox mailbox;
        if (group != nullptr) mailbox.group = *group;
        if (is_special('<')) {
            mailbox.display_name = phrase(start, end);
            auto status = angle_addr(mailbox);
            if (!status) return status;
        } else if (is_special(':')) {
            if (group != nullptr) return make_error("group inside a group");
            if (start == end) return make_error("group without a name");
            return group_body(phrase(start, end), out);
        } else if (is_special('@')) {
            auto status = addr_spec(start, mailbox);
            if (!status) return status;
        } else if (start == end) {
            return make_error(fmt::format("expected an address, found {}", describe_token(peek())));
        } else {
            return make_error("missing '@domain' in address");
        }
        out.push_back(std::move(mailbox));
        return {};
    }

    // group = display-name ":" [group-list] ";" (the ':' is next).
    Status group_body(const std::string& name, std::vector<Mailbox>& out) {
        ++pos_;
        while (true) {
            while (is_special(',')) ++pos_;  // obs-mbox-list
            if (is_special(';')) {
                ++pos_;
                return {};
            }
            if (peek().kind == TokenKind::end) return make_error("unterminated group (missing ';')");
            auto status = address(out, &name);
            if (!status) return status;
            if (!is_special(',') && !is_special(';')) {
                if (peek().kind == TokenKind::end) return make_error("unterminated group (missing ';')");
                return make_error(after_address_error());
            }
        }
    }

    // Display names are for people: words joined by one space where the
    // text had whitespace or a comment, dots kept (obs-phrase, "John Q. Public").
    std::string phrase(size_t start, size_t end) const {
        std::string out;
        for (size_t k = start; k < end; ++k) {
            const Token& token = tokens_[k];
            if (token.space_before && !out.empty()) out += ' ';
            out += token.kind == TokenKind::special ? std::string(1, token.special) : token.text;
        }
        return out;
    }

    // local-part "@" domain; the words of the local part are tokens[start, pos).
    Status addr_spec(size_t start, Mailbox& mailbox) {
        if (start == pos_) return make_error("missing local part before '@'");
        // dot-atom / quoted-string / obs-local-part: word *("." word).
        bool want_word = true;
        for (size_t k = start; k < pos_; ++k) {
            const bool dot = tokens_[k].kind == TokenKind::special;
            if (dot == want_word) {
                if (dot) return make_error("empty atom in local part (misplaced '.')");
                return make_error("words in local part must be separated by '.' (display name without '<...>'?)");
            }
            mailbox.local_part += dot ? std::string(".") : tokens_[k].text;
            want_word = dot;
        }
        if (want_word) return make_error("empty atom in local part (misplaced '.')");
        if (mailbox.local_part.empty()) return make_error("empty local part");
        ++pos_;  // '@'
        return domain(mailbox.domain);
    }

    // domain = dot-atom / domain-literal / obs-domain.
    Status domain(std::string& out) {
        if (peek().kind == TokenKind::literal) {
            out = "[" + peek().text + "]";
            ++pos_;
            return {};
        }
        if (peek().kind == TokenKind::quoted) return make_error("quoted string not allowed in domain");
        while (true) {
            if (peek().kind != TokenKind::atom) {
                if (out.empty()) return make_error("missing domain after '@'");
                return make_error("empty label in domain (misplaced '.')");
            }
            out += peek().text;
            ++pos_;
            if (!is_special('.')) return {};
            out += '.';
            ++pos_;
        }
    }

    // angle-addr / obs-angle-addr: "<" [obs-route] addr-spec ">".
    Status angle_addr(Mailbox& mailbox) {
        ++pos_;
        if (is_special('>')) return make_error("empty address '<>'");
        if (is_special('@') || is_special(',')) {
            // RFC 5322 §4.4 obs-route: parsed, then ignored like RFC 5321 §3.3 says.
            while (true) {
                while (is_special(',')) ++pos_;
                if (!is_special('@')) return make_error("route: each hop must be '@domain'");
                ++pos_;
                std::string ignored;
                auto status = domain(ignored);
                if (!status) return make_error("route: " + status.error());
                if (is_special(':')) break;
                if (!is_special(',')) return make_error("route must end with ':' before the mailbox");
            }
            ++pos_;
        }
        const size_t start = pos_;
        while (is_word() || is_special('.')) ++pos_;
        if (!is_special('@')) {
            if (peek().kind == TokenKind::end) return make_error("unterminated angle address (missing '>')");
            return make_error("missing '@domain' in angle address");
        }
        auto status = addr_spec(start, mailbox);
        if (!status) return status;
        if (is_special('>')) {
            ++pos_;
            return {};
        }
        if (is_special('@')) return make_error("more than one '@' in address");
        return make_error("unterminated angle address (missing '>')");
    }

    const std::vector<Token>& tokens_;
    size_t pos_ = 0;
};

}  // namespace

std::string Mailbox::address() const { return quote_local_part(local_part) + "@" + domain; }

Result<std::vector<Mailbox>> parse_address_list(std::string_view header_value) {
    if (header_value.size() > max_header_value_length) {
        return make_error(fmt::format("address list longer than {} octets", max_header_value_length));
    }
    auto tokens = Tokenizer(header_value).run();
    if (!tokens) return make_error(tokens.error());
    return ListParser(*tokens).address_list();
}

Result<Mailbox> parse_mailbox(std::string_view header_value) {
    auto list = parse_address_list(header_value);
    if (!list) return make_error(list.error());
    if (list->size() != 1 || !list->front().group.empty()) return make_error("expected exactly one mailbox");
    return std::move(list->front());
}

}  // namespace facteur::address
