package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.interceptor.auth.AuthorizedList;
import ca.uhn.fhir.rest.server.interceptor.auth.SearchNarrowingInterceptor;

/**
 * HAPI's {@link SearchNarrowingInterceptor}: a type search by a token with a {@code patient} and a
 * {@code patient/} read scope for the searched type is narrowed to that patient's compartment
 * ({@code ImagingStudy?identifier=x} becomes {@code ImagingStudy?identifier=x&patient=Patient/<patient>}),
 * so it finds the patient's data instead of failing with 403. Not narrowed: types outside the Patient
 * compartment (e.g. Endpoint), types a {@code user/} or {@code system/} read scope of the token covers, and
 * entries of batch/transaction Bundles (HAPI 8.8.0 would turn a read entry {@code GET ImagingStudy/x} into the
 * search {@code ImagingStudy?patient=...}); the authorization rules still check everything those return.
 */
public class SmartSearchNarrowingInterceptor extends SearchNarrowingInterceptor {
	private final BearerTokens myTokens;

	SmartSearchNarrowingInterceptor(BearerTokens theTokens) {
		myTokens = theTokens;
	}

	@Override
	protected AuthorizedList buildAuthorizedList(RequestDetails theRequest) {
		String type = theRequest.getResourceName(); // null for transactions and batches
		TokenInfo token = myTokens.lookup(theRequest);
		if (type == null || !token.isUsable() || token.patient() == null) {
			return null;
		}
		boolean patientScope = false;
		for (SmartScope scope : token.smartScopes()) {
			if (!scope.canRead() || !scope.covers(type)) {
				continue;
			}
			if (!scope.isPatientContext()) {
				return null; // a user/ or system/ scope reads this type unrestricted
			}
			patientScope = true;
		}
		return patientScope ? new AuthorizedList().addCompartment("Patient/" + token.patient()) : null;
	}
}
