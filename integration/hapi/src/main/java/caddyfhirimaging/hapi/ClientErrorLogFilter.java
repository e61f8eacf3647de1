package caddyfhirimaging.hapi;

import ca.uhn.fhir.interceptor.executor.BaseInterceptorService;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.ThrowableProxy;
import ch.qos.logback.core.filter.Filter;
import ch.qos.logback.core.spi.FilterReply;

/**
 * Logback filter (see logback.xml): drops HAPI's "Exception thrown by interceptor" errors for 4xx answers.
 * HAPI logs every exception an interceptor throws with a stack trace, so without this each 401/403/404 of
 * the SMART interceptors would print ~60 lines; 5xx stay logged.
 */
public class ClientErrorLogFilter extends Filter<ILoggingEvent> {
	@Override
	public FilterReply decide(ILoggingEvent theEvent) {
		if (BaseInterceptorService.class.getName().equals(theEvent.getLoggerName())
				&& theEvent.getThrowableProxy() instanceof ThrowableProxy proxy
				&& proxy.getThrowable() instanceof BaseServerResponseException e
				&& e.getStatusCode() < 500) {
			return FilterReply.DENY;
		}
		return FilterReply.NEUTRAL;
	}
}
