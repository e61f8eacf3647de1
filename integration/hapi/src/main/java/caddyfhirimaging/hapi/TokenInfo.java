package caddyfhirimaging.hapi;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * What RFC 7662 token introspection said about an access token (never the token itself).
 *
 * @param active   the authorization server's {@code active}
 * @param scopes   the space-separated {@code scope}, split
 * @param exp      {@code exp} in seconds since the epoch, 0 when absent
 * @param clientId {@code client_id}, may be null
 * @param sub      {@code sub}, may be null
 * @param patient  the SMART launch context {@code patient} as a bare id (e.g. {@code pat-s2}), or null
 * @param fhirUser the SMART {@code fhirUser} (e.g. {@code RelatedPerson/bob-proxy}), or null
 */
record TokenInfo(
		boolean active, List<String> scopes, long exp, String clientId, String sub, String patient, String fhirUser) {

	/** Stands for "no bearer token in the request". */
	static final TokenInfo NONE = new TokenInfo(false, List.of(), 0, null, null, null, null);

	static TokenInfo fromJson(JsonNode theJson) {
		List<String> scopes = new ArrayList<>();
		for (String s : theJson.path("scope").asText("").trim().split("\\s+")) {
			if (!s.isEmpty()) {
				scopes.add(s);
			}
		}
		String patient = text(theJson, "patient");
		if (patient != null && patient.contains("/")) {
			patient = patient.substring(patient.lastIndexOf('/') + 1); // "Patient/x" -> "x"
		}
		return new TokenInfo(
				theJson.path("active").asBoolean(false),
				List.copyOf(scopes),
				theJson.path("exp").asLong(0),
				text(theJson, "client_id"),
				text(theJson, "sub"),
				patient,
				text(theJson, "fhirUser"));
	}

	private static String text(JsonNode theJson, String theField) {
		JsonNode v = theJson.get(theField);
		return v == null || v.isNull() || v.asText().isBlank() ? null : v.asText();
	}

	/** Active and not past {@code exp}. */
	boolean isUsable() {
		return active && (exp == 0 || exp > System.currentTimeMillis() / 1000);
	}

	/** The SMART resource scopes among {@link #scopes}; others (openid, launch, ?query scopes...) are left out. */
	List<SmartScope> smartScopes() {
		return scopes.stream().map(SmartScope::parse).filter(Objects::nonNull).toList();
	}

	/** True for a patient's proxy or caregiver: {@code fhirUser} is a RelatedPerson (relative or absolute URL). */
	boolean isRelatedPerson() {
		return fhirUser != null && fhirUser.matches("(.*/)?RelatedPerson/[^/]+");
	}
}
