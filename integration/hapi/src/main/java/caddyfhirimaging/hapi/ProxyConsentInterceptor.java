package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.interceptor.consent.ConsentInterceptor;

/**
 * HAPI's {@link ConsentInterceptor} with the {@link RestrictedConsentService}, engaged only for tokens whose
 * {@code fhirUser} is a RelatedPerson (a patient's proxy or caregiver). Requests of anyone else (the patient,
 * practitioners, system clients) are marked authorized at the start, so consent changes nothing for them,
 * not even the {@code _total=accurate} / {@code _summary=count} refusals and the removed {@code Bundle.total}
 * that HAPI's consent interceptor otherwise applies to every request.
 */
public class ProxyConsentInterceptor extends ConsentInterceptor {
	private final BearerTokens myTokens;

	ProxyConsentInterceptor(BearerTokens theTokens) {
		super(new RestrictedConsentService());
		myTokens = theTokens;
	}

	@Override
	public void interceptPreHandled(RequestDetails theRequest) {
		if (theRequest.getRestOperationType() == RestOperationTypeEnum.METADATA) {
			return; // needs no token; HAPI's consent interceptor leaves /metadata alone anyway
		}
		TokenInfo token = myTokens.lookup(theRequest);
		if (token.isUsable() && token.isRelatedPerson()) {
			super.interceptPreHandled(theRequest);
		} else {
			authorizeRequest(theRequest); // no token: the authorization interceptor answers 401
		}
	}
}
