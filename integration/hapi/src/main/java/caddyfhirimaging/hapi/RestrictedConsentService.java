package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.interceptor.consent.ConsentOutcome;
import ca.uhn.fhir.rest.server.interceptor.consent.IConsentContextServices;
import ca.uhn.fhir.rest.server.interceptor.consent.IConsentService;
import org.hl7.fhir.instance.model.api.IBaseCoding;
import org.hl7.fhir.instance.model.api.IBaseResource;

/**
 * Consent rule: resources labelled restricted ({@code meta.security} code {@code R} of
 * {@code http://terminology.hl7.org/CodeSystem/v3-Confidentiality}) are hidden. HAPI drops them from
 * search results (and {@code _include}s) and answers reads of them with 404.
 * {@link ProxyConsentInterceptor} applies it to tokens of a patient's proxy only.
 */
final class RestrictedConsentService implements IConsentService {
	static final String CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

	@Override
	public ConsentOutcome canSeeResource(
			RequestDetails theRequest, IBaseResource theResource, IConsentContextServices theContextServices) {
		return isRestricted(theResource) ? ConsentOutcome.REJECT : ConsentOutcome.PROCEED;
	}

	static boolean isRestricted(IBaseResource theResource) {
		for (IBaseCoding label : theResource.getMeta().getSecurity()) {
			if (CONFIDENTIALITY.equals(label.getSystem()) && "R".equals(label.getCode())) {
				return true;
			}
		}
		return false;
	}
}
