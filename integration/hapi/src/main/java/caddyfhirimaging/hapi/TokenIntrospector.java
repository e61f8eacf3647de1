package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.server.exceptions.UnclassifiedServerFailureException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * RFC 7662 token introspection client: POSTs {@code token=...} to the authorization server's introspection
 * endpoint, authenticating with HTTP Basic (client_secret_basic), and caches each answer briefly under the
 * SHA-256 of the token (at most {@code cacheSeconds}, never past the token's {@code exp}).
 * An unreachable endpoint or a non-200 answer is a 503 for the FHIR client. Tokens are never logged.
 */
final class TokenIntrospector {
	private static final Logger ourLog = LoggerFactory.getLogger(TokenIntrospector.class);
	private static final ObjectMapper JSON = new ObjectMapper();
	private static final int MAX_CACHED = 10_000;

	private record Cached(TokenInfo info, long expiresAtMillis) {}

	private final URI myEndpoint;
	private final String myAuthorization;
	private final long myCacheMillis;
	private final HttpClient myHttp =
			HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3)).build();
	private final Map<String, Cached> myCache = new ConcurrentHashMap<>();

	TokenIntrospector(URI theEndpoint, String theClientId, String theClientSecret, int theCacheSeconds) {
		myEndpoint = theEndpoint;
		// RFC 6749 2.3.1: client id and secret are form-urlencoded before Basic encoding.
		String credentials = form(theClientId) + ":" + form(theClientSecret);
		myAuthorization = "Basic " + Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8));
		myCacheMillis = theCacheSeconds * 1000L;
	}

	/** What the authorization server says about the token (possibly from the cache). */
	TokenInfo introspect(String theToken) {
		String key = sha256(theToken);
		long now = System.currentTimeMillis();
		Cached cached = myCache.get(key);
		if (cached != null && cached.expiresAtMillis() > now) {
			return cached.info();
		}
		TokenInfo info = ask(theToken);
		long until = now + myCacheMillis;
		if (info.exp() > 0) {
			until = Math.min(until, info.exp() * 1000);
		}
		if (until > now) {
			if (myCache.size() >= MAX_CACHED) {
				myCache.values().removeIf(c -> c.expiresAtMillis() <= now);
				if (myCache.size() >= MAX_CACHED) {
					myCache.clear();
				}
			}
			myCache.put(key, new Cached(info, until));
		}
		return info;
	}

	private TokenInfo ask(String theToken) {
		HttpRequest request = HttpRequest.newBuilder(myEndpoint)
				.timeout(Duration.ofSeconds(5))
				.header("Authorization", myAuthorization)
				.header("Content-Type", "application/x-www-form-urlencoded")
				.header("Accept", "application/json")
				.POST(HttpRequest.BodyPublishers.ofString("token=" + form(theToken) + "&token_type_hint=access_token"))
				.build();
		HttpResponse<String> response;
		try {
			response = myHttp.send(request, HttpResponse.BodyHandlers.ofString());
		} catch (InterruptedException e) {
			Thread.currentThread().interrupt();
			throw unavailable("interrupted");
		} catch (Exception e) {
			throw unavailable(e.getClass().getSimpleName());
		}
		if (response.statusCode() != 200) {
			throw unavailable("HTTP " + response.statusCode());
		}
		try {
			JsonNode json = JSON.readTree(response.body());
			if (json == null || !json.isObject()) {
				throw unavailable("answer is not a JSON object");
			}
			return TokenInfo.fromJson(json);
		} catch (com.fasterxml.jackson.core.JsonProcessingException e) {
			throw unavailable("answer is not JSON");
		}
	}

	private UnclassifiedServerFailureException unavailable(String theWhy) {
		ourLog.warn("token introspection at {} failed: {}", myEndpoint, theWhy);
		return new UnclassifiedServerFailureException(503, "Token introspection is unavailable (" + theWhy + ")");
	}

	private static String form(String theValue) {
		return URLEncoder.encode(theValue, StandardCharsets.UTF_8);
	}

	private static String sha256(String theToken) {
		try {
			return HexFormat.of()
					.formatHex(MessageDigest.getInstance("SHA-256").digest(theToken.getBytes(StandardCharsets.UTF_8)));
		} catch (NoSuchAlgorithmException e) {
			throw new IllegalStateException(e);
		}
	}
}
