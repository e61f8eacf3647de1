package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.AuthenticationException;

/**
 * The bearer token of a FHIR request, introspected once per request (the answer is kept in the request's
 * user data, so the authorization, search-narrowing and consent interceptors share it).
 */
final class BearerTokens {
	private static final String USER_DATA_KEY = BearerTokens.class.getName();

	private final TokenIntrospector myIntrospector;

	BearerTokens(TokenIntrospector theIntrospector) {
		myIntrospector = theIntrospector;
	}

	/** The request's token: {@link TokenInfo#NONE} without an {@code Authorization: Bearer} header. */
	TokenInfo lookup(RequestDetails theRequest) {
		TokenInfo info = (TokenInfo) theRequest.getUserData().get(USER_DATA_KEY);
		if (info == null) {
			String token = bearer(theRequest.getHeader("Authorization"));
			info = token == null ? TokenInfo.NONE : myIntrospector.introspect(token);
			theRequest.getUserData().put(USER_DATA_KEY, info);
		}
		return info;
	}

	/** The request's token if it is active and unexpired, else HTTP 401 with {@code WWW-Authenticate: Bearer}. */
	TokenInfo require(RequestDetails theRequest) {
		TokenInfo info = lookup(theRequest);
		if (info == TokenInfo.NONE) {
			AuthenticationException e = new AuthenticationException("Bearer access token required");
			e.addResponseHeader("WWW-Authenticate", "Bearer");
			throw e;
		}
		if (!info.isUsable()) {
			AuthenticationException e = new AuthenticationException("Access token is not active");
			e.addResponseHeader("WWW-Authenticate", "Bearer error=\"invalid_token\"");
			throw e;
		}
		return info;
	}

	private static String bearer(String theHeader) {
		if (theHeader == null || !theHeader.regionMatches(true, 0, "Bearer ", 0, 7)) {
			return null;
		}
		String token = theHeader.substring(7).trim();
		return token.isEmpty() ? null : token;
	}
}
